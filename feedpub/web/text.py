"""The reader pages' strings in each language feedpub ships; `site.language` picks one (English otherwise).
An operator rewords a page by overriding its template (`web.templates_dir`)."""

TEXT = {
    "en": {"subscribe": "Subscribe", "email": "E-mail address", "name": "Name (optional)",
           "categories": "Only these categories (none ticked: everything)",
           "check_mail": "Thanks! Check your inbox: we sent a link to confirm the subscription.",
           "confirmed": "Your subscription is confirmed. The next digest will reach you.",
           "unsubscribe": "Unsubscribe", "unsubscribe_ask": "Stop receiving the digest at {email}?",
           "unsubscribed": "You are unsubscribed. You will not receive the digest any more.",
           "preferences": "Save preferences", "saved": "Your preferences are saved.",
           "preferences_for": "Digest preferences for {email}",
           "bad_categories": "None of the chosen categories exists any more: nothing was changed.",
           "bad_link": "This link is invalid or has expired.", "bad_email": "Please enter a valid e-mail address.",
           "too_many": "Too many subscription requests from your network (at most {limit} an hour). Please try "
                       "again in {minutes} minutes.",
           "use_mail_link": "Please use the link at the bottom of the digest you received: it is made for your "
                            "address.",
           "confirm_subject": "Confirm your subscription to {title}",
           "confirm_body": "Please confirm your subscription to {title} by opening this link:\n\n{url}\n\n"
                           "If you did not ask for it, ignore this mail: nothing will be sent to you.\n"},
    "ja": {"subscribe": "購読する", "email": "メールアドレス", "name": "お名前（任意）",
           "categories": "受け取るカテゴリ（選択なし：すべて）",
           "check_mail": "ありがとうございます。確認用のリンクをメールでお送りしました。",
           "confirmed": "購読が確定しました。次号からお届けします。",
           "unsubscribe": "配信を停止する", "unsubscribe_ask": "{email} へのダイジェスト配信を停止しますか？",
           "unsubscribed": "配信を停止しました。今後ダイジェストは届きません。",
           "preferences": "設定を保存", "saved": "設定を保存しました。",
           "preferences_for": "{email} の配信設定",
           "bad_categories": "選択したカテゴリはもう存在しません。設定は変更されていません。",
           "bad_link": "このリンクは無効か、有効期限が切れています。",
           "bad_email": "正しいメールアドレスを入力してください。",
           "too_many": "このネットワークからの購読申し込みが多すぎます（1時間に{limit}件まで）。"
                       "{minutes}分後にもう一度お試しください。",
           "use_mail_link": "お受け取りのダイジェスト末尾にあるリンクをご利用ください（読者ごとに異なるリンクです）。",
           "confirm_subject": "{title} の購読確認",
           "confirm_body": "{title} の購読を確定するには、次のリンクを開いてください。\n\n{url}\n\n"
                           "お心当たりのない場合は、このメールを破棄してください。\n"},
}


def strings(language: str) -> dict[str, str]:
    """The strings for a `site.language` such as "ja" or "en-GB"."""
    return TEXT.get(language.split("-")[0], TEXT["en"])
