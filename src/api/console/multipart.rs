//! `multipart/form-data` (RFC 7578), as a browser posts a form with a file: just enough to read
//! the console's import form, whose body is already read whole and bounded
//! (`api.max_import_bytes`). Each part becomes a `(name, text)` field like an urlencoded
//! form's, a file's content included; a part that is not UTF-8 text is refused, as a list file
//! must be text.
//!
//! Knows nothing of what the fields mean.

/// Parts read at most: the import form has a handful.
const MAX_PARTS: usize = 32;

/// The boundary of a `multipart/form-data` content type, or `None` for any other type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut it = content_type.split(';');
    let kind = it.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    it.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
    .filter(|b| !b.is_empty() && b.len() <= 70)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// A header parameter's value: `name="x"` in `form-data; name="x"; filename="y"`.
fn param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The fields of `body`, or what is wrong with it.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, String> {
    let delim = format!("--{boundary}");
    let next = format!("\r\n--{boundary}");
    let mut at = match find(body, delim.as_bytes(), 0) {
        Some(0) => delim.len(),
        _ => return Err("multipart body does not start with its boundary".into()),
    };
    let mut out = Vec::new();
    loop {
        match body.get(at..at + 2) {
            Some(b"--") => return Ok(out),
            Some(b"\r\n") => at += 2,
            _ => return Err("multipart boundary not followed by a line break".into()),
        }
        if out.len() == MAX_PARTS {
            return Err(format!("more than {MAX_PARTS} parts"));
        }
        let head_end =
            find(body, b"\r\n\r\n", at).ok_or("a multipart part without the end of its headers")?;
        let head = std::str::from_utf8(&body[at..head_end])
            .map_err(|_| "multipart part headers are not text")?;
        let name = head
            .split("\r\n")
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then(|| param(v, "name"))
                    .flatten()
            })
            .ok_or("a multipart part without a Content-Disposition name")?;
        let start = head_end + 4;
        let end = find(body, next.as_bytes(), start).ok_or("a multipart part without its end")?;
        let text = std::str::from_utf8(&body[start..end])
            .map_err(|_| format!("field {name}: not UTF-8 text"))?;
        out.push((name, text.to_string()));
        at = end + next.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_browsers_form_with_a_file() {
        let ct = "multipart/form-data; boundary=----WebKitFormBoundaryAbC";
        let b = boundary(ct).unwrap();
        let body = "------WebKitFormBoundaryAbC\r\n\
            Content-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n\
            ------WebKitFormBoundaryAbC\r\n\
            Content-Disposition: form-data; name=\"file\"; filename=\"l.txt\"\r\n\
            Content-Type: text/plain\r\n\r\n+12025550143\r\n# x\r\n\r\n\
            ------WebKitFormBoundaryAbC--\r\n";
        assert_eq!(
            parse(body.as_bytes(), &b).unwrap(),
            [
                ("csrf".to_string(), "tok".to_string()),
                ("file".to_string(), "+12025550143\r\n# x\r\n".to_string())
            ]
        );
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
        assert_eq!(
            boundary("multipart/form-data; boundary=\"q\"").as_deref(),
            Some("q")
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            &b"junk"[..],
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end",
            b"--b\r\nX: y\r\n\r\nv\r\n--b--",
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\r\n--b--",
        ] {
            assert!(parse(bad, "b").is_err(), "{bad:?}");
        }
    }
}
