// An independent ActivityPub server for feedpub's fediverse tests: Fedify (not our code) on 127.0.0.1.
//
//   node peer.mjs PORT
//
// Two actors, /users/peer (the follower) and /users/mallory (whose key signs forgeries), each with an RSA key
// (HTTP Signatures: Fedify sends RFC 9421 first and, refused, draft-cavage as Mastodon does, then remembers) and an
// Ed25519 key (Object Integrity Proofs, as Fedify servers such as Ghost add). Fedify verifies every inbox POST
// (HTTP Signature with its digest, date window, signer = actor) before its listener records the activity; every
// POST, accepted or not, is logged with Fedify's answer.
//
// Control API for the test (JSON in and out), on the same port under /control/:
//   POST /control/follow    {"handle": "@blog@127.0.0.1:8443"}  WebFinger + actor lookup, then a signed Follow
//   POST /control/unfollow  {"actor": "https://…/actor"}        Undo of that Follow
//                           (both as /users/peer, or as {"as": "mallory"})
//   POST /control/lookup    {"uri": "…"}                         Fedify's lookupObject, uncached: the object
//   POST /control/nodeinfo  {"url": "https://host/"}             NodeInfo 2.1 as Fedify parses it (strictly)
//   POST /control/outbox    {"actor": "…"}                       every item of its outbox, paged as Fedify walks it
//   POST /control/send      {"inbox", "body", "signer", "key_of", "date", "tamper", "spec"}  a raw request signed
//                           as asked (body sent as given; "tamper": "body" adds a space after signing; "spec":
//                           "rfc9421" or, the default, "draft-cavage-http-signatures-12")
//   POST /control/fault     {"inbox": "ok" | "500" | "hang"}     how this server's inboxes answer from now on
//   GET  /control/received  {"verified": [...], "posts": [...], "sent": [...], "fetched": [...]}
//   POST /control/reset     forget what was received and sent
// It prints "listening on http://127.0.0.1:PORT" once it serves.
import http from "node:http";
import { randomUUID } from "node:crypto";
import { Temporal } from "@js-temporal/polyfill";
import {
  Activity,
  createFederation,
  Endpoints,
  Follow,
  generateCryptoKeyPair,
  getDocumentLoader,
  parseNodeInfo,
  MemoryKvStore,
  Person,
  signRequest,
  traverseCollection,
  Undo,
} from "@fedify/fedify";

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node peer.mjs PORT");
  process.exit(2);
}
const origin = `http://127.0.0.1:${port}`;
const ACTORS = ["peer", "mallory"];

// Every outgoing POST as sent (headers and body), so a test can replay one byte for byte.
const sent = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const request = new Request(input, init);
  if (request.method !== "POST") return realFetch(request);
  const body = await request.clone().text();
  const response = await realFetch(request);
  sent.push({ url: request.url, headers: Object.fromEntries(request.headers), body, status: response.status });
  return response;
};

// RSA keys of 2048 bits, as Mastodon makes them (Fedify's generateCryptoKeyPair makes 4096: seconds per key).
const rsa = { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" };
const keyPairs = {};
for (const name of ACTORS) {
  keyPairs[name] = [await crypto.subtle.generateKey(rsa, true, ["sign", "verify"]),
    await generateCryptoKeyPair("Ed25519")];
}

const freshLoader = getDocumentLoader({ allowPrivateAddress: true });
const federation = createFederation({ kv: new MemoryKvStore(), allowPrivateAddress: true, origin });

federation
  .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
    if (!ACTORS.includes(identifier)) return null;
    const keys = await ctx.getActorKeyPairs(identifier);
    return new Person({
      id: ctx.getActorUri(identifier),
      preferredUsername: identifier,
      name: `Fedify ${identifier}`,
      inbox: ctx.getInboxUri(identifier),
      endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
      publicKey: keys[0].cryptographicKey,
      assertionMethods: keys.map((key) => key.multikey),
    });
  })
  .setKeyPairsDispatcher((_ctx, identifier) => keyPairs[identifier] ?? []);

// Reached only after Fedify verified the request (or the activity's proof): what a real server would act on.
const verified = [];
federation
  .setInboxListeners("/users/{identifier}/inbox", "/inbox")
  .on(Activity, async (ctx, activity) => {
    let object = null;
    let objectError = null;   // why an object given by id could not be fetched
    if (activity.objectId != null) object = await activity.getObject().catch((error) => { objectError = String(error); });
    verified.push({
      recipient: ctx.recipient,
      type: activity.constructor.name,
      id: activity.id?.href ?? null,
      actor: activity.actorId?.href ?? null,
      object_id: activity.objectId?.href ?? null,
      object: object == null ? null : await object.toJsonLd({ format: "compact" }),
      object_error: objectError,
    });
  });

// Every POST to an inbox with Fedify's answer; inbox faults are applied before Fedify sees the request.
const posts = [];
const fetched = [];   // every other request (what was read of its actors and keys): path, and who signed it
let fault = "ok";
const hanging = new Set();
const follows = new Map();   // "follower followed-actor-id" → the Follow, for its Undo

async function control(path, input) {
  const ctx = federation.createContext(new URL(origin), undefined);
  const as = input.as ?? "peer";
  switch (path) {
    case "/control/follow": {
      const actor = await ctx.lookupObject(input.handle);
      if (actor == null) return [404, { error: `lookup of ${input.handle} found nothing` }];
      const follow = new Follow({
        id: new URL(`${origin}/follows/${randomUUID()}`),
        actor: ctx.getActorUri(as),
        object: actor.id,
        to: actor.id,
      });
      follows.set(`${as} ${actor.id.href}`, follow);
      await ctx.sendActivity({ identifier: as }, actor, follow, { immediate: true });
      return [200, { actor: await actor.toJsonLd({ format: "compact" }), follow: follow.id.href }];
    }
    case "/control/unfollow": {
      const follow = follows.get(`${as} ${input.actor}`);
      if (follow == null) return [404, { error: `${input.actor} was never followed` }];
      const actor = await ctx.lookupObject(input.actor);
      const undo = new Undo({
        id: new URL(`${origin}/undos/${randomUUID()}`),
        actor: ctx.getActorUri(as),
        object: follow,
        to: actor.id,
      });
      await ctx.sendActivity({ identifier: as }, actor, undo, { immediate: true });
      follows.delete(`${as} ${input.actor}`);
      return [200, { undo: undo.id.href }];
    }
    case "/control/lookup": {
      // Read afresh: the federation's own loader keeps what it fetched for 5 minutes.
      const found = await ctx.lookupObject(input.uri, { documentLoader: freshLoader });
      return found == null ? [404, { error: `nothing at ${input.uri}` }]
        : [200, { type: found.constructor.name, object: await found.toJsonLd({ format: "compact" }) }];
    }
    case "/control/nodeinfo": {
      // As Fedify's getNodeInfo reads it (which refuses private addresses): the well-known links, the 2.1
      // document, parsed strictly (null unless it is NodeInfo as Fedify's schema reads it).
      const links = await (await realFetch(new URL("/.well-known/nodeinfo", input.url))).json();
      const link = links.links.find((found) => found.rel === "http://nodeinfo.diaspora.software/ns/schema/2.1");
      const info = link == null ? null : parseNodeInfo(await (await realFetch(link.href)).json());
      return info == null ? [404, { error: `no valid NodeInfo at ${input.url}` }]
        : [200, { software: { ...info.software, version: String(info.software.version) },
          protocols: info.protocols, usage: info.usage, openRegistrations: info.openRegistrations }];
    }
    case "/control/outbox": {
      // Every item of an actor's outbox, page after page, as Fedify walks a collection.
      const actor = await ctx.lookupObject(input.actor, { documentLoader: freshLoader });
      const outbox = await actor.getOutbox({ documentLoader: freshLoader });
      const items = [];
      for await (const item of traverseCollection(outbox, { documentLoader: freshLoader })) {
        items.push(await item.toJsonLd({ format: "compact" }));
      }
      return [200, { totalItems: outbox.totalItems, items }];
    }
    case "/control/send":
      return [200, await sendRaw(input)];
    case "/control/fault":
      fault = input.inbox;
      for (const release of hanging) release();
      hanging.clear();
      return [200, { inbox: fault }];
    case "/control/reset":
      verified.length = 0;
      posts.length = 0;
      sent.length = 0;
      fetched.length = 0;
      return [200, {}];
    default:
      return [404, { error: `no control ${path}` }];
  }
}
// A request signed by `signer`'s RSA key under the keyId of `key_of` (default: the signer), with the body as
// given: how the tests make unsigned, wrongly signed, forged, stale, malformed and oversized deliveries.
async function sendRaw({ inbox, body, signer = "peer", key_of = signer, date, tamper, unsigned,
  spec = "draft-cavage-http-signatures-12" }) {
  const headers = { "Content-Type": "application/activity+json" };
  let request = new Request(inbox, { method: "POST", headers, body });
  if (!unsigned) {
    const keyId = new URL(`${origin}/users/${key_of}#main-key`);
    // `date` is when it was signed: its Date header, and RFC 9421's `created`
    const currentTime = date ? Temporal.Instant.from(new Date(date).toISOString()) : undefined;
    request = await signRequest(request, keyPairs[signer][0].privateKey, keyId, { spec, currentTime });
  }
  const sentBody = tamper === "body" ? `${body} ` : body;   // still the same JSON, no longer its Digest
  const response = await realFetch(inbox, { method: "POST", headers: request.headers, body: sentBody });
  return { status: response.status, body: await response.text(), headers: Object.fromEntries(request.headers) };
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function answer(res, status, value) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(value));
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, origin);
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : await readBody(req);
    if (url.pathname.startsWith("/control/")) {
      if (req.method === "GET" && url.pathname === "/control/received") {
        return answer(res, 200, { verified, posts, sent, fetched });
      }
      const [status, value] = await control(url.pathname, body?.length ? JSON.parse(body) : {});
      return answer(res, status, value);
    }
    if (req.method !== "POST") {
      fetched.push({ method: req.method, path: url.pathname, signature: req.headers.signature ?? null,
        signature_input: req.headers["signature-input"] ?? null });
    }
    const isInboxPost = req.method === "POST" && /^\/(inbox|users\/[^/]+\/inbox)$/.test(url.pathname);
    if (isInboxPost && fault !== "ok") {
      posts.push({ path: url.pathname, fault, body: body.toString("utf8") });
      if (fault === "hang") return hanging.add(() => res.destroyed || answer(res, 503, { fault }));
      return answer(res, 500, { fault });
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) headers.set(name, [].concat(value).join(", "));
    const response = await federation.fetch(new Request(url, { method: req.method, headers, body }), {
      contextData: undefined,
    });
    const text = Buffer.from(await response.arrayBuffer());
    if (isInboxPost) {
      posts.push({ path: url.pathname, status: response.status, answer: text.toString("utf8"),
        signature: headers.get("signature"), body: body.toString("utf8") });
    }
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(text);
  } catch (error) {
    console.error(error);
    answer(res, 500, { error: String(error?.stack ?? error) });
  }
});
server.listen(port, "127.0.0.1", () => console.log(`listening on ${origin}`));
