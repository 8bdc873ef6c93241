//! The customer's web page: one HTML page per language (Korean, English), rendered once at start
//! from `assets/index.html` and the texts of `assets/messages.json`, plus its script and style.
//!
//! Every asset is in the binary (no CDN). The language is the customer's choice (a cookie the page's
//! switch sets), else the first of Korean or English in `Accept-Language`, else English. The page
//! is served under a strict Content-Security-Policy: its only script is `/assets/app.js`, its
//! only style `/assets/app.css`; the texts the script needs travel in a JSON data block, which is
//! never executed.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const MESSAGES_JSON: &str = include_str!("../assets/messages.json");

/// The cookie the page's language switch sets (`ko` or `en`): a preference, nothing secret.
pub(crate) const LANG_COOKIE: &str = "onlinebank_lang";

/// The policy of the page and its assets: nothing but the bank's own script, style and API.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// A language the page speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Ko,
}

impl Lang {
    #[cfg(test)]
    const ALL: [Lang; 2] = [Lang::En, Lang::Ko];

    fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
        }
    }

    fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Ko,
            Lang::Ko => Lang::En,
        }
    }

    fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("ko") {
            Some(Lang::Ko)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The page's language for a request: the cookie, else `Accept-Language`, else English.
    pub(crate) fn choose(headers: &HeaderMap) -> Lang {
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == LANG_COOKIE)
            .and_then(|(_, value)| Lang::parse(value));
        cookie
            .or_else(|| {
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(Lang::from_accept_language)
            })
            .unwrap_or(Lang::En)
    }

    /// The first of the page's languages in an `Accept-Language` list, by quality (ties keep the
    /// listed order); `q=0` means "not this one".
    fn from_accept_language(value: &str) -> Option<Lang> {
        let mut ranked: Vec<(u16, usize, Lang)> = value
            .split(',')
            .enumerate()
            .filter_map(|(position, item)| {
                let mut parts = item.split(';');
                let lang = Lang::parse(parts.next()?)?;
                let quality = parts
                    .filter_map(|param| param.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                let quality = (quality.clamp(0.0, 1.0) * 1000.0).round() as u16;
                (quality > 0).then_some((quality, position, lang))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.first().map(|(_, _, lang)| *lang)
    }
}

/// One language's texts, by key.
type Texts = BTreeMap<String, String>;

/// The page's texts in every language, as in `assets/messages.json`.
fn messages() -> anyhow::Result<BTreeMap<String, Texts>> {
    Ok(serde_json::from_str(MESSAGES_JSON)?)
}

/// The rendered pages and the assets, with their validators.
pub(crate) struct Pages {
    en: Asset,
    ko: Asset,
    script: Asset,
    style: Asset,
}

pub(crate) struct Asset {
    body: bytes::Bytes,
    content_type: &'static str,
    etag: HeaderValue,
    lang: Option<Lang>,
}

impl Asset {
    pub(crate) fn new(
        body: String,
        content_type: &'static str,
        lang: Option<Lang>,
    ) -> anyhow::Result<Asset> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))?;
        Ok(Asset {
            body: body.into(),
            content_type,
            etag,
            lang,
        })
    }

    /// The asset, or 304 when the client has this very version.
    pub(crate) fn respond(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tag| tag.as_bytes() == self.etag.as_bytes());
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut response = Response::new(Body::from(self.body.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        // Always revalidated: a new bank version's page never meets an old script.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if let Some(lang) = self.lang {
            headers.insert(
                header::CONTENT_LANGUAGE,
                HeaderValue::from_static(lang.code()),
            );
            headers.insert(
                header::VARY,
                HeaderValue::from_static("Accept-Language, Cookie"),
            );
        }
        response
    }
}

impl Pages {
    pub(crate) fn new() -> anyhow::Result<Pages> {
        let messages = messages()?;
        let texts = |lang: Lang| {
            messages
                .get(lang.code())
                .ok_or_else(|| anyhow::anyhow!("messages.json has no {:?} texts", lang.code()))
        };
        let page = |lang: Lang| -> anyhow::Result<Asset> {
            let html = render(INDEX_HTML, lang, texts(lang)?)?;
            Asset::new(html, "text/html; charset=utf-8", Some(lang))
        };
        Ok(Pages {
            en: page(Lang::En)?,
            ko: page(Lang::Ko)?,
            script: Asset::new(APP_JS.into(), "text/javascript; charset=utf-8", None)?,
            style: Asset::new(APP_CSS.into(), "text/css; charset=utf-8", None)?,
        })
    }

    pub(crate) fn index(&self, request: &HeaderMap) -> Response {
        match Lang::choose(request) {
            Lang::En => self.en.respond(request),
            Lang::Ko => self.ko.respond(request),
        }
    }

    pub(crate) fn script(&self, request: &HeaderMap) -> Response {
        self.script.respond(request)
    }

    pub(crate) fn style(&self, request: &HeaderMap) -> Response {
        self.style.respond(request)
    }
}

/// The page in one language: `{{key}}` becomes that text (HTML-escaped), `{{$lang}}` the language,
/// `{{$other}}` the one the switch leads to, `{{$version}}` the bank's version and `{{$messages}}`
/// every text as JSON for the script. A key without a text is an error.
fn render(template: &str, lang: Lang, texts: &Texts) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len() + 16 * 1024);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("unclosed {{{{ in index.html"))?;
        let key = &after[..end];
        match key {
            "$lang" => out.push_str(lang.code()),
            "$other" => out.push_str(lang.other().code()),
            "$version" => out.push_str(env!("CARGO_PKG_VERSION")),
            "$messages" => {
                // Inside <script type="application/json">: no `<` may end the block early.
                let json = serde_json::to_string(texts)?;
                out.push_str(&json.replace('<', "\\u003c"));
            }
            _ => {
                let text = texts.get(key).ok_or_else(|| {
                    anyhow::anyhow!("no {:?} text for {key:?} in messages.json", lang.code())
                })?;
                escape_into(&mut out, text);
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => {
                let _ = out.write_char(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_language_is_the_cookie_then_accept_language_then_english() {
        let choose = |pairs: &[(&str, &str)]| Lang::choose(&headers(pairs));
        assert_eq!(choose(&[]), Lang::En);
        assert_eq!(choose(&[("accept-language", "ko-KR")]), Lang::Ko);
        assert_eq!(
            choose(&[("accept-language", "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7")]),
            Lang::Ko
        );
        assert_eq!(
            choose(&[("accept-language", "fr-FR, en;q=0.5, ko;q=0.8")]),
            Lang::Ko
        );
        assert_eq!(choose(&[("accept-language", "en-US,en;q=0.9")]), Lang::En);
        assert_eq!(choose(&[("accept-language", "ko;q=0, en")]), Lang::En);
        assert_eq!(choose(&[("accept-language", "de, fr")]), Lang::En);
        assert_eq!(choose(&[("accept-language", ",,;q=x, KO")]), Lang::Ko);
        assert_eq!(
            choose(&[
                ("accept-language", "ko-KR"),
                ("cookie", "a=b; onlinebank_lang=en")
            ]),
            Lang::En
        );
        assert_eq!(
            choose(&[("accept-language", "en"), ("cookie", "onlinebank_lang=ko")]),
            Lang::Ko
        );
        // A cookie that is not a language is ignored.
        assert_eq!(
            choose(&[("accept-language", "ko"), ("cookie", "onlinebank_lang=xx")]),
            Lang::Ko
        );
    }

    #[test]
    fn every_text_exists_in_both_languages() {
        let messages = messages().expect("messages.json parses");
        let en = &messages["en"];
        let ko = &messages["ko"];
        assert_eq!(messages.len(), 2, "exactly en and ko");
        let en_keys: BTreeSet<_> = en.keys().collect();
        let ko_keys: BTreeSet<_> = ko.keys().collect();
        assert_eq!(
            en_keys.difference(&ko_keys).collect::<Vec<_>>(),
            Vec::<&&String>::new(),
            "English texts without a Korean one"
        );
        assert_eq!(
            ko_keys.difference(&en_keys).collect::<Vec<_>>(),
            Vec::<&&String>::new(),
            "Korean texts without an English one"
        );
        for (lang, texts) in &messages {
            for (key, text) in texts {
                assert!(!text.trim().is_empty(), "{lang} {key} is empty");
                // Placeholders agree between the languages.
                let holes = |s: &str| -> BTreeSet<String> {
                    s.split('{')
                        .skip(1)
                        .filter_map(|part| part.split_once('}').map(|(name, _)| name.to_owned()))
                        .collect()
                };
                assert_eq!(
                    holes(text),
                    holes(&en[key]),
                    "{lang} {key}: placeholders differ from English"
                );
            }
        }
        // Korean texts are Korean (a copied English text would pass the checks above).
        let hangul = |s: &str| s.chars().any(|c| ('\u{ac00}'..='\u{d7a3}').contains(&c));
        for (key, text) in ko {
            let exempt = ["money", "amount.echo", "lang.switch"];
            if !exempt.contains(&key.as_str()) {
                assert!(hangul(text), "ko {key} has no Korean: {text:?}");
            }
        }
    }

    #[test]
    fn both_pages_render_with_every_placeholder_filled() {
        let messages = messages().expect("messages.json parses");
        for lang in Lang::ALL {
            let html = render(INDEX_HTML, lang, &messages[lang.code()]).expect("renders");
            assert!(!html.contains("{{"), "{lang:?}: a placeholder is left");
            assert!(html.contains(&format!("<html lang=\"{}\">", lang.code())));
            assert!(
                !html.contains("</script><"),
                "the data block is closed once"
            );
        }
        let ko = render(INDEX_HTML, Lang::Ko, &messages["ko"]).expect("renders");
        assert!(ko.contains("<h2>로그인</h2>"));
        assert!(ko.contains("data-lang=\"en\">English</button>"));
        let missing = render("{{no.such.key}}", Lang::En, &messages["en"]);
        assert!(missing.is_err(), "a key without a text fails");
    }

    /// Every text key the script names is in messages.json (keys built at run time are listed
    /// here by hand: the operation types and the error codes).
    #[test]
    fn every_key_the_script_uses_has_texts() {
        let messages = messages().expect("messages.json parses");
        let en = &messages["en"];
        let mut used = BTreeSet::new();
        // Every 'a.b' literal (a quote, key characters, a quote), wherever it stands.
        for (at, _) in APP_JS.match_indices('\'') {
            let rest = &APP_JS[at + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .unwrap_or(rest.len());
            let quoted = &rest[..end];
            let key_like = rest[end..].starts_with('\'')
                && quoted.contains('.')
                && !quoted.ends_with('.')
                && !quoted.starts_with("onlinebank.")
                && quoted.starts_with(|c: char| c.is_ascii_lowercase());
            if key_like {
                used.insert(quoted.to_owned());
            }
        }
        for kind in ["open", "deposit", "withdraw", "transfer", "close"] {
            used.insert(format!("what.{kind}"));
        }
        for kind in [
            "open",
            "deposit",
            "withdraw",
            "close",
            "transfer_out",
            "transfer_in",
            "transfer_reversed",
        ] {
            used.insert(format!("tx.type.{kind}"));
        }
        for kind in ["deposit", "withdraw", "transfer", "close"] {
            used.insert(format!("op.submit.{kind}"));
        }
        for kind in ["deposit", "withdraw", "transfer"] {
            used.insert(format!("done.{kind}"));
        }
        assert!(used.len() > 50, "the scan finds the keys: {used:?}");
        let missing: Vec<_> = used.iter().filter(|key| !en.contains_key(*key)).collect();
        assert!(missing.is_empty(), "keys without texts: {missing:?}");
    }

    /// The page's markup runs nothing and styles nothing by itself (the CSP would refuse it): no
    /// inline script, no event handler attribute, no style attribute, no `javascript:` link.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let messages = messages().expect("messages.json parses");
        for lang in Lang::ALL {
            let html = render(INDEX_HTML, lang, &messages[lang.code()]).expect("renders");
            let lower = html.to_ascii_lowercase();
            assert_eq!(
                lower.matches("<script").count(),
                2,
                "{lang:?}: data + app.js"
            );
            assert!(!lower.contains(" style=\""), "{lang:?}: a style attribute");
            assert!(!lower.contains("<style"), "{lang:?}: a style element");
            assert!(
                !lower.contains("javascript:"),
                "{lang:?}: a javascript: link"
            );
            let handler = lower
                .split(|c: char| c.is_whitespace())
                .find(|word| word.starts_with("on") && word.contains('='));
            assert_eq!(handler, None, "{lang:?}: an inline event handler");
        }
    }

    /// Every error code the API documents (docs/api.md) and every reason a request can fail for
    /// has a customer's message in both languages.
    #[test]
    fn every_error_code_has_a_message() {
        let messages = messages().expect("messages.json parses");
        let api = include_str!("../../../docs/api.md");
        let mut codes = BTreeSet::new();
        // Table rows "| `code` | 409 |" and inline "409 `code`".
        for line in api.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() > 3 && cells[2].chars().all(|c| c.is_ascii_digit() || c == '/') {
                if let Some(code) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
                    codes.insert(code.to_owned());
                }
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.windows(2) {
                if pair[0].len() == 3
                    && pair[0].starts_with(['4', '5'])
                    && pair[0].chars().all(|c| c.is_ascii_digit())
                {
                    let code =
                        pair[1].trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
                    if pair[1].starts_with('`')
                        && code.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && !code.is_empty()
                    {
                        codes.insert(code.to_owned());
                    }
                }
            }
        }
        for reason in onlinebank_core::Reason::ALL {
            codes.insert(reason.code().to_owned());
        }
        for code in [
            "internal",
            "request_cancelled",
            "request_not_found",
            "invalid_credentials",
            "customer_exists",
            "unauthorized",
        ] {
            assert!(
                codes.contains(code),
                "the scan of docs/api.md finds {code}: {codes:?}"
            );
        }
        for lang in Lang::ALL {
            let texts = &messages[lang.code()];
            let missing: Vec<_> = codes
                .iter()
                .filter(|code| !texts.contains_key(&format!("err.{code}")))
                .collect();
            assert!(
                missing.is_empty(),
                "{lang:?}: error codes without a message: {missing:?}"
            );
        }
    }
}
