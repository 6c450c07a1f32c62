<?xml version="1.0" encoding="UTF-8"?>
<!-- feedpub: renders an Atom or RSS 2.0 feed opened in a browser as a readable page.
     Feed readers ignore this file; it only changes what a person sees who clicks a feed link. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:atom="http://www.w3.org/2005/Atom"
    xmlns:media="http://search.yahoo.com/mrss/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    exclude-result-prefixes="atom media dc">
  <xsl:output method="html" encoding="UTF-8" indent="yes" doctype-system="about:legacy-compat"/>

  <xsl:variable name="title" select="/atom:feed/atom:title | /rss/channel/title"/>
  <xsl:variable name="subtitle" select="/atom:feed/atom:subtitle | /rss/channel/description"/>
  <xsl:variable name="home" select="/atom:feed/atom:link[@rel='alternate']/@href | /rss/channel/link"/>
  <xsl:variable name="self" select="/atom:feed/atom:link[@rel='self']/@href | /rss/channel/atom:link[@rel='self']/@href"/>
  <xsl:variable name="lang" select="/atom:feed/@xml:lang | /rss/channel/language"/>

  <xsl:template match="/">
    <html lang="{$lang}">
      <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title><xsl:value-of select="$title"/> — feed</title>
        <style>
          :root { color-scheme: light dark; --accent: #c2410c; --muted: #6b7280; --card: #ffffff; --bg: #f6f5f3; }
          @media (prefers-color-scheme: dark) { :root { --card: #1f2023; --bg: #141517; --muted: #9ca3af; } }
          body { margin: 0; background: var(--bg);
                 font: 16px/1.7 system-ui, -apple-system, "Hiragino Sans", "Noto Sans CJK JP", "IPAGothic", sans-serif; }
          main { max-width: 44rem; margin: 0 auto; padding: 1.5rem 1rem 4rem; }
          .notice { background: #fff7ed; color: #7c2d12; border: 1px solid #fed7aa; border-radius: .6rem;
                    padding: .8rem 1rem; font-size: .92rem; }
          .notice code { background: #ffedd5; padding: .1rem .35rem; border-radius: .3rem; word-break: break-all; }
          header { margin: 2rem 0 1.5rem; }
          header h1 { margin: 0 0 .3rem; font-size: 1.9rem; line-height: 1.3; }
          header p { margin: 0; color: var(--muted); }
          header a { color: var(--accent); }
          article { background: var(--card); border-radius: .8rem; padding: 1.1rem 1.3rem; margin: 0 0 1rem;
                    box-shadow: 0 1px 3px rgba(0, 0, 0, .08); display: flex; gap: 1rem; }
          article .text { flex: 1; min-width: 0; }
          article h2 { margin: 0 0 .2rem; font-size: 1.2rem; line-height: 1.4; }
          article h2 a { color: inherit; text-decoration: none; }
          article h2 a:hover { color: var(--accent); text-decoration: underline; }
          .meta { color: var(--muted); font-size: .85rem; }
          .tag { display: inline-block; border: 1px solid var(--muted); border-radius: 1rem; padding: 0 .55rem;
                 margin: 0 .3rem .2rem 0; font-size: .78rem; }
          .summary { margin-top: .4rem; }
          .summary p { margin: .3rem 0; }
          article img.thumb { width: 6.5rem; height: 6.5rem; object-fit: cover; border-radius: .5rem; }
        </style>
      </head>
      <body>
        <main>
          <p class="notice">This is a web feed. Copy its address into your feed reader to subscribe:
            <code><xsl:value-of select="$self"/></code></p>
          <header>
            <h1><xsl:value-of select="$title"/></h1>
            <xsl:if test="$subtitle != $title"><p><xsl:value-of select="$subtitle"/></p></xsl:if>
            <p><a href="{$home}">Visit the site →</a></p>
          </header>
          <xsl:apply-templates select="/atom:feed/atom:entry | /rss/channel/item"/>
        </main>
      </body>
    </html>
  </xsl:template>

  <xsl:template match="atom:entry">
    <xsl:call-template name="entry">
      <xsl:with-param name="link" select="atom:link[not(@rel) or @rel='alternate'][1]/@href"/>
      <xsl:with-param name="date" select="substring(atom:published | atom:updated[not(../atom:published)], 1, 10)"/>
      <xsl:with-param name="author" select="atom:author/atom:name"/>
      <xsl:with-param name="summary" select="atom:summary"/>
      <xsl:with-param name="labels" select="atom:category/@term"/>
    </xsl:call-template>
  </xsl:template>

  <xsl:template match="item">
    <xsl:call-template name="entry">
      <xsl:with-param name="link" select="link"/>
      <xsl:with-param name="date" select="substring(pubDate, 6, 11)"/>
      <xsl:with-param name="author" select="dc:creator"/>
      <xsl:with-param name="summary" select="description"/>
      <xsl:with-param name="labels" select="category"/>
    </xsl:call-template>
  </xsl:template>

  <xsl:template name="entry">
    <xsl:param name="link"/>
    <xsl:param name="date"/>
    <xsl:param name="author"/>
    <xsl:param name="summary"/>
    <xsl:param name="labels"/>
    <article>
      <div class="text">
        <h2><a href="{$link}"><xsl:value-of select="atom:title | title"/></a></h2>
        <div class="meta">
          <xsl:value-of select="$date"/>
          <xsl:if test="$author"> · <xsl:value-of select="$author"/></xsl:if>
        </div>
        <div>
          <xsl:for-each select="$labels"><span class="tag"><xsl:value-of select="."/></span></xsl:for-each>
        </div>
        <!-- The summary is HTML that feedpub sanitised; browsers without disable-output-escaping show it as text. -->
        <div class="summary"><xsl:value-of select="$summary" disable-output-escaping="yes"/></div>
      </div>
      <xsl:if test="media:thumbnail/@url">
        <img class="thumb" src="{media:thumbnail/@url}" alt=""/>
      </xsl:if>
    </article>
  </xsl:template>
</xsl:stylesheet>
