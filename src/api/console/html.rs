//! The console's HTML: escaping, the page frame (navigation, who is logged in, the logout
//! form), the vendored assets, and the headers every console reply carries (a CSP that allows
//! no inline script or style and nothing from elsewhere, `X-Frame-Options: DENY`, no caching).
//!
//! Pages are written as Rust `format!` text through [`esc`]: every value that comes from a call,
//! a list or an operator goes through it. Knows nothing of sessions' storage, the store or
//! calls.

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};

use super::session::Session;
use crate::api::auth::Role;
use crate::api::http::{full, ResponseBody};

/// No script but our own files, no inline script or style, no frames, forms only to us.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Text made safe for HTML content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text made safe for a query value in a link.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn when(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// The CSRF field every write form carries.
pub fn csrf_field(s: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

/// The console's pages: path, title, and the role that may open them.
pub const NAV: &[(&str, &str, Role)] = &[
    ("live", "Live", Role::Read),
    ("overview", "Overview", Role::Read),
    ("check", "Check & what-if", Role::Read),
    ("lists", "Lists", Role::Read),
    ("reports", "Reports", Role::Read),
    ("disputes", "Disputes", Role::Read),
    ("feeds", "Feeds", Role::Read),
    ("audit", "Audit", Role::Admin),
];

/// A whole page: the frame around `body`, with the navigation the session may use.
pub fn page(title: &str, here: &str, who: Option<&Session>, body: &str) -> String {
    let nav = match who {
        None => String::new(),
        Some(s) => {
            let links: String = NAV
                .iter()
                .filter(|(_, _, need)| s.role >= *need)
                .map(|(p, t, _)| {
                    let class = if *p == here { " class=\"here\"" } else { "" };
                    format!("<a href=\"/console/{p}\"{class}>{t}</a>")
                })
                .collect();
            format!(
                "<nav>{links}</nav><div class=\"who\"><span>{} ({})</span>\
                 <form class=\"inline\" method=\"post\" action=\"/console/logout\">{}\
                 <button class=\"quiet\" type=\"submit\">Log out</button></form></div>",
                esc(&s.name),
                s.role.as_str(),
                csrf_field(s)
            )
        }
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"htmx-config\" content='{{\"includeIndicatorStyles\":false,\"allowEval\":false,\"allowScriptTags\":false,\"selfRequestsOnly\":true}}'>\
         <title>{} - scamguard</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/htmx.min.js\"></script>\
         <script src=\"/console/assets/sse.min.js\"></script></head>\
         <body><header><span class=\"brand\">scamguard</span>{nav}</header>\
         <main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// The headers every console reply carries.
fn guard_headers(r: &mut Response<ResponseBody>) {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it a browser sends `Origin: null`, and the same-site check of a
    // form post (mod.rs) could not tell our own forms from another site's.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

/// A reply of `ctype` with the console's headers; not cached unless `cache` says so.
pub fn reply(code: StatusCode, ctype: &'static str, body: Bytes) -> Response<ResponseBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    guard_headers(&mut r);
    r
}

pub fn html(code: StatusCode, text: String) -> Response<ResponseBody> {
    reply(code, "text/html; charset=utf-8", Bytes::from(text))
}

/// 303 to `to`, with the console's headers.
pub fn redirect(to: &str) -> Response<ResponseBody> {
    let mut r = reply(StatusCode::SEE_OTHER, "text/plain", Bytes::new());
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// A page that says what went wrong, with the status it goes with.
pub fn problem(code: StatusCode, who: Option<&Session>, msg: &str) -> Response<ResponseBody> {
    let body = format!(
        "<div class=\"card\"><p class=\"error\">{}</p></div>",
        esc(msg)
    );
    html(
        code,
        page(code.canonical_reason().unwrap_or("Error"), "", who, &body),
    )
}

/// A vendored asset by file name.
pub fn asset(name: &str) -> Option<Response<ResponseBody>> {
    let (ctype, body): (&'static str, &'static [u8]) = match name {
        "htmx.min.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("assets/htmx.min.js"),
        ),
        "sse.min.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("assets/sse.min.js"),
        ),
        "console.css" => (
            "text/css; charset=utf-8",
            include_bytes!("assets/console.css"),
        ),
        _ => return None,
    };
    let mut r = reply(StatusCode::OK, ctype, Bytes::from_static(body));
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Some(r)
}

/// The class of an action's badge.
pub fn action_badge(a: crate::screening::Action) -> String {
    format!("<span class=\"action action-{0}\">{0}</span>", a.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(enc("+1 202/x"), "%2B1%20202%2Fx");
        assert_eq!(when(0), "1970-01-01 00:00:00");
    }

    #[test]
    fn a_page_hides_what_the_role_may_not_open() {
        let s = |role| Session {
            name: "<b>".into(),
            role,
            csrf: "c".into(),
            expires: std::time::Instant::now(),
        };
        let read = page("t", "live", Some(&s(Role::Read)), "");
        assert!(!read.contains("/console/audit") && read.contains("/console/lists"));
        assert!(read.contains("&lt;b&gt;") && !read.contains("<b>"));
        let admin = page("t", "live", Some(&s(Role::Admin)), "");
        assert!(admin.contains("/console/audit"));
        assert!(!page("t", "", None, "").contains("<nav>"));
    }
}
