//! The `Link` header of a paginated tag list (RFC 8288), as registries send it:
//! `<url>; rel="next"`, and also without angle brackets or quotes.

/// Returns the target of the `rel="next"` link of a `Link` header value, as written
/// (often relative: `/v2/<name>/tags/list?n=100&last=v1.2.3`).
pub fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|link| {
        let mut parts = link.split(';');
        let target = parts.next()?.trim();
        let is_next = parts.any(|parameter| {
            let Some((name, value)) = parameter.split_once('=') else {
                return false;
            };
            let value = value.trim().trim_matches('"');
            name.trim().eq_ignore_ascii_case("rel")
                && value.split_ascii_whitespace().any(|relation| relation.eq_ignore_ascii_case("next"))
        });
        if !is_next {
            return None;
        }
        let target = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')).unwrap_or(target).trim();
        (!target.is_empty()).then_some(target)
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(r#"</v2/mojaloop/als/tags/list?n=2&last=v1.0.1>; rel="next""#, Some("/v2/mojaloop/als/tags/list?n=2&last=v1.0.1"))]
    #[case(r#"/v2/mojaloop/als/tags/list?n=2&last=v1.0.1; rel="next""#, Some("/v2/mojaloop/als/tags/list?n=2&last=v1.0.1"))]
    #[case("</v2/a/tags/list?last=x&n=5>; rel=next", Some("/v2/a/tags/list?last=x&n=5"))]
    #[case(r#"<http://127.0.0.1:5000/v2/a/tags/list?n=5&last=x>;rel="Next""#, Some("http://127.0.0.1:5000/v2/a/tags/list?n=5&last=x"))]
    #[case(r#"</first>; rel="prev", </second>; rel="next""#, Some("/second"))]
    #[case(r#"</up>; rel="prev next""#, Some("/up"))]
    #[case(r#"</prev>; rel="prev""#, None)]
    #[case("", None)]
    #[case(r#"<>; rel="next""#, None)]
    fn next_link_spellings(#[case] header: &str, #[case] expected: Option<&str>) {
        assert_eq!(next_link(header), expected);
    }
}
