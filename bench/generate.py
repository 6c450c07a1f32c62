"""A deterministic corpus of Jekyll posts for the build benchmark.

    python bench/generate.py OUT_DIR --posts 10000 --categories 50 --tags 200 --size-kb 6 --seed 1
    python bench/generate.py OUT_DIR --touch-one     # edit the newest post's body
    python bench/generate.py OUT_DIR --add-one       # add one post, newer than every other

OUT_DIR gets `feedpub.toml`, `posts/` and `corpus.json` (what was generated, and the newest post,
which --touch-one and --add-one read). The same options and seed give the same bytes on every machine:
no network, no clock. About 70% of the prose is Japanese; the front matter uses the forms real
Jekyll blogs use (`+0000` and `+09:00` offsets, naive dates, categories as a list, a space-separated
string or a singular `category`, excerpts in front matter or cut at `<!--more-->`).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

JST = timezone(timedelta(hours=9))
# Fixed, in the past, so that no generated post is "in the future" and skipped by the build.
FIRST = datetime(2021, 1, 1, 0, 0, tzinfo=JST)
LAST = datetime(2025, 12, 31, 23, 0, tzinfo=JST)

CONFIG = """\
[site]
title = "ALLFORCES bench"
url = "https://bench.example.com"
description = "A generated corpus for the feedpub benchmark"
language = "ja"
timezone = "Asia/Tokyo"
author = "ALLFORCES編集部"
posts_dir = "posts"
permalink = "/:categories/:year/:month/:day/:title:output_ext"

[feeds]
output_dir = "public"
formats = ["atom", "rss", "json"]
limit = 20
categories = true
"""

JA_SENTENCES = [
    "新しいモデルの発表で、推論性能の向上という数字が話題になっている。",
    "数字そのものよりも大切なのは、それが現場のどの作業をどれだけ速くするかだ。",
    "カスタマーサポートでは、複雑な問い合わせへの一次回答をAIが担う場面が増えてきた。",
    "ソフトウェア開発の分野では、コードレビューの自動化が生産性を大きく押し上げている。",
    "医療や金融のように正確さが求められる分野では、人間の判断を補う道具として使われ始めた。",
    "投資家にとって、基盤モデルを持つ企業の動向は無視できない。",
    "一方で、ベンチマークのスコアだけが先行し、実務での効果が伴わない例も少なくない。",
    "オープンソースのモデルが増えたことで、中小企業でも独自の仕組みを作りやすくなった。",
    "導入の前に、学習データの出所と生成物の権利の扱いを確認しておきたい。",
    "社内ガイドラインを整備しないまま使い始めると、後で大きな手戻りが発生する。",
    "全角と半角が混在するテキストは、まずNFKC正規化をかけるのが定石だ。",
    "句読点で文を区切れば、ほとんどの日本語の文章は扱える。",
    "君はどう思う？　この変化は、君の仕事にどんな影響を与えるだろうか。",
    "僕たちはこの数字を鵜呑みにせず、現実の業務でどう役立つかを見極める必要がある。",
    "クラウド各社は推論コストの引き下げを競っており、価格は一年で半分以下になった。",
    "量子化と蒸留の組み合わせで、スマートフォンでも動くモデルが現実的になってきた。",
    "検索拡張生成（RAG）は、社内文書を活かす最も手堅い方法の一つだ。",
    "評価指標を自社の業務に合わせて作り直すことが、導入成功の近道になる。",
    "規制の議論は各国で進んでおり、透明性の確保が共通の論点になっている。",
    "現場のエンジニアからは、運用監視の仕組みがまだ足りないという声が多い。",
]
JA_BOLD = [
    "**推論性能35%**向上", "**処理速度2倍**を達成", "**コスト40%**削減", "**精度98.5%**を記録",
    "**応答時間120ms**短縮", "**利用者数300万人**突破",
]
EN_SENTENCES = [
    "Three releases stood out this week, and all of them point the same way.",
    "Smaller models that answer faster and cost less to run are winning real workloads.",
    "The first is a 7B model that matches last year's 70B on most reasoning benchmarks.",
    "You do not need a framework to put a model behind HTTP.",
    "Evaluation sets drift, so a benchmark score is only a starting point.",
    "Quantisation trades a little accuracy for a lot of memory, and the trade is usually worth it.",
    "Retrieval helps most when the documents are short, current and well structured.",
    "Latency matters more than throughput for anything a person waits on.",
    "Open weights made it possible for small teams to fine-tune for their own domain.",
    "The hardest part of shipping a model is monitoring it after launch.",
    "Costs fell by half in a year, and the curve has not flattened yet.",
    "Regulators on both sides of the Pacific are asking for the same thing: transparency.",
]
JA_HEADINGS = ["背景", "何が変わったのか", "現場への影響", "投資の視点", "技術的な詳細", "今後の見通し", "まとめ"]
EN_HEADINGS = ["Background", "What changed", "Why it matters", "How it works", "What to watch", "Summary"]
JA_CATEGORY_ROOTS = ["AI導入戦略", "機械学習", "生成AI", "法務", "エンジニアリング", "投資", "半導体", "自然言語処理",
                     "画像認識", "ロボティクス", "セキュリティ", "クラウド", "データ分析", "教育", "医療AI"]
EN_CATEGORY_ROOTS = ["news", "analysis", "releases", "engineering", "research", "policy", "startups",
                     "hardware", "open-source", "tutorials"]
JA_TAG_ROOTS = ["AI", "最新ニュース", "技術動向", "推論", "ベンチマーク", "著作権", "ガバナンス", "量子化",
                "蒸留", "検索"]
EN_TAG_ROOTS = ["Meta", "OpenAI", "Google", "python", "llm", "gpu", "rag", "agents", "models", "eval"]
CODE = {
    "python": ("from http import HTTPStatus\n\n\n"
               "def handle(request):\n    return HTTPStatus.OK, {\"answer\": 42}\n"),
    "bash": "pip install feedpub\nfeedpub --config feedpub.toml build\n",
    "json": "{\n  \"model\": \"llama\",\n  \"temperature\": 0.2,\n  \"max_tokens\": 512\n}\n",
}
AUTHORS = ["ALLFORCES編集部", "Dana Reyes", "佐藤 花子", "Sam Okafor"]


@dataclass(frozen=True)
class Manifest:
    """What is in OUT_DIR; --add-one and --touch-one read and update it."""

    posts: int
    categories: int
    tags: int
    size_kb: float
    seed: int
    newest_file: str      # relative to OUT_DIR
    newest_date: str      # ISO, JST
    added: int = 0
    edits: int = 0


def names(roots: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` distinct names without spaces (so a space-separated list stays unambiguous) whose
    slugs cannot collide: roots first, then roots with a number."""
    result = list(roots)
    number = 2
    while len(result) < count:
        result.extend(f"{root}{number}" for root in roots)
        number += 1
    rng.shuffle(result)
    return result[:count]


def vocabulary(rng: random.Random, categories: int, tags: int) -> tuple[list[str], list[str]]:
    """The corpus's category and tag names; the first draws of the seeded generator, so --add-one
    can draw them again."""
    return (names(JA_CATEGORY_ROOTS + EN_CATEGORY_ROOTS, categories, rng),
            names(JA_TAG_ROOTS + EN_TAG_ROOTS, tags, rng))


def post_dates(count: int, rng: random.Random) -> list[datetime]:
    """`count` distinct instants between FIRST and LAST, oldest first, spread evenly with jitter."""
    span = (LAST - FIRST).total_seconds()
    step = span / count
    seconds = [int(i * step + rng.random() * step * 0.8) for i in range(count)]
    return [FIRST + timedelta(seconds=s) for s in seconds]


def front_matter_date(instant: datetime, rng: random.Random) -> str:
    form = rng.random()
    if form < 0.5:  # Jekyll's own form; YAML reads it as a string
        return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000")
    if form < 0.8:
        return instant.strftime("%Y-%m-%d %H:%M:%S +09:00")
    return instant.strftime("%Y-%m-%d %H:%M:%S")  # naive: the site's time zone (Asia/Tokyo)


def quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def categories_lines(chosen: list[str], rng: random.Random) -> list[str]:
    form = rng.random()
    if len(chosen) == 1 and form < 0.25:
        return [f"category: {chosen[0]}"]
    if form < 0.55:
        return ["categories: [" + ", ".join(quoted(c) for c in chosen) + "]"]
    if form < 0.8:
        return ["categories: " + " ".join(chosen)]
    return ["categories:", *(f"  - {c}" for c in chosen)]


def sentence(rng: random.Random, japanese: bool) -> str:
    if japanese:
        text = rng.choice(JA_SENTENCES)
        if rng.random() < 0.08:
            text = f"今回は{rng.choice(JA_BOLD)}したという。" + text
        return text
    text = rng.choice(EN_SENTENCES)
    if rng.random() < 0.08:
        text = f"**{rng.randint(2, 90)}% faster** inference, says the vendor. " + text
    return text


def paragraph(rng: random.Random, japanese: bool) -> str:
    joiner = "" if japanese else " "
    return joiner.join(sentence(rng, japanese) for _ in range(rng.randint(2, 5)))


def block(rng: random.Random, japanese: bool, index: int, slugs: list[str]) -> str:
    """One Markdown block: mostly prose, sometimes a heading, list, link, image or code."""
    kind = rng.random()
    if kind < 0.55:
        return paragraph(rng, japanese)
    if kind < 0.65:
        return "## " + rng.choice(JA_HEADINGS if japanese else EN_HEADINGS)
    if kind < 0.75:
        marker = "1." if rng.random() < 0.4 else "-"
        return "\n".join(f"{marker} {sentence(rng, japanese)}" for _ in range(rng.randint(2, 5)))
    if kind < 0.85:
        relative = f"/{rng.choice(slugs)}.html"
        absolute = f"https://example.org/articles/{rng.randint(1, 9999)}"
        if japanese:
            return f"詳しくは[前回の記事]({relative})と[公式発表]({absolute})を参照してほしい。"
        return f"See [our earlier post]({relative}) and [the announcement]({absolute}) for details."
    if kind < 0.92:
        src = (f"/assets/images/{index:06d}-{rng.randint(1, 9)}.png" if rng.random() < 0.7
               else f"images/figure-{rng.randint(1, 9)}.jpg")
        alt = "図：推論性能の比較" if japanese else "Figure: latency by model size"
        return f"![{alt}]({src})"
    language = rng.choice(sorted(CODE))
    return f"```{language}\n{CODE[language]}```"


def body(rng: random.Random, size_bytes: int, index: int, slugs: list[str]) -> tuple[str, bool]:
    """Markdown of about `size_bytes` UTF-8 bytes; True when it has a `<!--more-->` marker."""
    blocks = [paragraph(rng, rng.random() < 0.7)]
    more = rng.random() < 0.2
    if more:
        blocks.append("<!--more-->")
    if rng.random() < 0.05:
        language = rng.choice(sorted(CODE))
        blocks.append(f"{{% highlight {language} %}}\n{CODE[language]}{{% endhighlight %}}")
    size = sum(len(b.encode()) + 2 for b in blocks)
    while size < size_bytes:
        text = block(rng, rng.random() < 0.7, index, slugs)
        blocks.append(text)
        size += len(text.encode()) + 2
    return "\n\n".join(blocks) + "\n", more


def title_and_slug(rng: random.Random, index: int) -> tuple[str, str]:
    """Titles are ~70% Japanese; file-name slugs are ASCII or Japanese, unique by the index."""
    if rng.random() < 0.7:
        topic = rng.choice(JA_CATEGORY_ROOTS)
        title = f"{topic}の最新動向{index}：{rng.choice(JA_BOLD).replace('**', '')}は何を変えるのか"
        slug = f"{topic}-{index}" if rng.random() < 0.3 else f"ai-news-{index}"
    else:
        title = f"Weekly roundup {index}: {rng.choice(EN_SENTENCES).rstrip('.')}"
        slug = f"weekly-roundup-{index}"
    return title, slug


def post_text(rng: random.Random, index: int, instant: datetime, categories: list[str], tags: list[str],
              size_bytes: int, slugs: list[str]) -> tuple[str, str]:
    """(file name, file text) of post number `index`."""
    title, slug = title_and_slug(rng, index)
    chosen = rng.sample(categories, rng.choice((1, 1, 1, 2, 2, 3)))
    text, has_more = body(rng, size_bytes, index, slugs)
    lines = ["---"]
    if rng.random() < 0.8:
        lines.append("layout: post")
    lines.append(f"title: {quoted(title)}")
    lines.append(f"date: {front_matter_date(instant, rng)}")
    lines.extend(categories_lines(chosen, rng))
    if rng.random() < 0.85:
        lines.append("tags: [" + ", ".join(quoted(t) for t in rng.sample(tags, rng.randint(1, 6))) + "]")
    if rng.random() < 0.5:
        lines.append(f"author: {quoted(rng.choice(AUTHORS))}")
    if not has_more and rng.random() < 0.35:
        lines.append(f"excerpt: {quoted(f'{rng.choice(JA_BOLD)}について詳細に分析します。')}")
    if rng.random() < 0.3:
        lines.append(f"reading_time: {rng.randint(3, 12)}")
    if rng.random() < 0.2:
        lines.append(f"image: /assets/images/{index:06d}-cover.png")
    lines.append("---")
    name = f"{instant:%Y-%m-%d}-{slug}.md"
    return name, "\n".join(lines) + "\n\n" + text


def generate(out: Path, *, posts: int, categories: int, tags: int, size_kb: float, seed: int) -> Manifest:
    """Write a fresh corpus into `out` (its posts/ folder is replaced)."""
    rng = random.Random(seed)
    category_names, tag_names = vocabulary(rng, categories, tags)
    folder = out / "posts"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (out / "feedpub.toml").write_text(CONFIG, encoding="utf-8")
    slugs = [f"archive/{n}" for n in range(1, 50)]
    newest = ""
    instants = post_dates(posts, rng)
    for index, instant in enumerate(instants, start=1):
        name, text = post_text(rng, index, instant, category_names, tag_names, int(size_kb * 1024), slugs)
        (folder / name).write_text(text, encoding="utf-8")
        newest = name
    manifest = Manifest(posts=posts, categories=categories, tags=tags, size_kb=size_kb, seed=seed,
                        newest_file=f"posts/{newest}", newest_date=instants[-1].isoformat())
    write_manifest(out, manifest)
    return manifest


def add_one(out: Path) -> Path:
    """A new post one hour after the newest one, in the corpus's own style; becomes the newest."""
    manifest = read_manifest(out)
    number = manifest.posts + manifest.added + 1
    rng = random.Random(f"{manifest.seed}-add-{number}")
    instant = datetime.fromisoformat(manifest.newest_date) + timedelta(hours=1)
    category_names, tag_names = vocabulary(random.Random(manifest.seed), manifest.categories, manifest.tags)
    name, text = post_text(rng, number, instant, category_names, tag_names, int(manifest.size_kb * 1024),
                           ["archive/1"])
    path = out / "posts" / name
    path.write_text(text, encoding="utf-8")
    write_manifest(out, Manifest(**{**asdict(manifest), "added": manifest.added + 1,
                                    "newest_file": f"posts/{name}", "newest_date": instant.isoformat()}))
    return path


def touch_one(out: Path) -> Path:
    """Append a paragraph to the newest post (it is in every feed it belongs to, so the edit shows)."""
    manifest = read_manifest(out)
    edits = manifest.edits + 1
    path = out / manifest.newest_file
    with path.open("a", encoding="utf-8") as file:
        file.write(f"\n追記（{edits}回目）：読者の指摘を受けて、数字の出典を本文に加えた。\n")
    write_manifest(out, Manifest(**{**asdict(manifest), "edits": edits}))
    return path


def read_manifest(out: Path) -> Manifest:
    return Manifest(**json.loads((out / "corpus.json").read_text(encoding="utf-8")))


def write_manifest(out: Path, manifest: Manifest) -> None:
    (out / "corpus.json").write_text(json.dumps(asdict(manifest), ensure_ascii=False, indent=2) + "\n",
                                     encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for feedpub.toml, posts/ and corpus.json")
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--categories", type=int, default=50)
    parser.add_argument("--tags", type=int, default=200)
    parser.add_argument("--size-kb", type=float, default=6.0, help="approximate body size of each post")
    parser.add_argument("--seed", type=int, default=1)
    change = parser.add_mutually_exclusive_group()
    change.add_argument("--touch-one", action="store_true", help="edit the newest post of an existing corpus")
    change.add_argument("--add-one", action="store_true", help="add one newest post to an existing corpus")
    args = parser.parse_args(argv)
    if args.touch_one:
        print(f"edited {touch_one(args.out)}")
    elif args.add_one:
        print(f"added {add_one(args.out)}")
    else:
        manifest = generate(args.out, posts=args.posts, categories=args.categories, tags=args.tags,
                            size_kb=args.size_kb, seed=args.seed)
        print(f"wrote {manifest.posts} posts to {args.out / 'posts'} (newest {manifest.newest_file})")


if __name__ == "__main__":
    main()
