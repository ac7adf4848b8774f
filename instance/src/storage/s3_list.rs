//! Reading a ListObjectsV2 answer: the keys and sizes of its `<Contents>`
//! and its continuation token. Read here rather than with a full XML
//! deserializer because S3-compatible servers differ in the fields they
//! send (some leave out `ETag`); keys are asked for unencoded, so they
//! arrive XML-escaped only.

/// One page of a listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Page {
    pub objects: Vec<(String, u64)>,
    /// Set when the listing goes on.
    pub next: Option<String>,
}

/// The page, or `None` when the text is not a listing.
pub(super) fn parse(xml: &str) -> Option<Page> {
    if !xml.contains("<ListBucketResult") {
        return None;
    }
    let mut page = Page::default();
    let mut rest = xml;
    while let Some((contents, after)) = element(rest, "Contents") {
        let key = unescape(element(contents, "Key")?.0)?;
        let size = element(contents, "Size")?.0.trim().parse().ok()?;
        page.objects.push((key, size));
        rest = after;
    }
    let truncated = element(xml, "IsTruncated").is_some_and(|(t, _)| t.trim() == "true");
    if truncated {
        page.next = Some(unescape(element(xml, "NextContinuationToken")?.0)?);
    }
    Some(page)
}

/// The text of the first `<name>...</name>` and what follows it.
fn element<'a>(xml: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some((&xml[start..start + len], &xml[start + len + close.len()..]))
}

/// XML's five entities and numeric character references.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';')? + at;
        let entity = &rest[at + 1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match entity.strip_prefix("#x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => entity.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(code)?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_read() {
        let xml = r#"<?xml version="1.0"?><ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated><Contents><Key>a/x&amp;y &#233;.txt</Key><Size>3</Size></Contents><Contents><Key>a/b</Key><ETag>"e"</ETag><Size>0</Size></Contents><NextContinuationToken>t&amp;1</NextContinuationToken></ListBucketResult>"#;
        let page = parse(xml).expect("page");
        assert_eq!(
            page.objects,
            vec![("a/x&y é.txt".to_owned(), 3), ("a/b".to_owned(), 0)]
        );
        assert_eq!(page.next.as_deref(), Some("t&1"));
        let last = parse("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>")
            .expect("page");
        assert_eq!(last, Page::default());
        assert_eq!(parse("<Error><Code>AccessDenied</Code></Error>"), None);
        assert_eq!(unescape("&bogus;"), None);
    }
}
