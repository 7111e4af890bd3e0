//! A syntax check of Kubernetes label selectors, so that a mistyped
//! `--namespace-selector` is a configuration error before the scan starts rather than
//! a `400 Bad Request` from the API server.
//!
//! The grammar is the one of `labels.Parse` in k8s.io/apimachinery: requirements
//! separated by commas, each `key`, `!key`, `key=value`, `key==value`, `key!=value`,
//! `key in (v1,v2)`, `key notin (v1,v2)`, or `key<N` and `key>N` with an integer `N`.
//! An empty selector selects everything.

/// The maximum length of a label name, and of a label value.
const MAX_NAME: usize = 63;
/// The maximum length of a label key's prefix, a DNS subdomain.
const MAX_PREFIX: usize = 253;

/// Checks the syntax of `selector`. The error names the requirement and its problem.
pub fn check(selector: &str) -> Result<(), String> {
    if selector.trim().is_empty() {
        return Ok(());
    }
    for requirement in split_requirements(selector)? {
        check_requirement(requirement.trim()).map_err(|problem| format!("requirement {:?}: {problem}", requirement.trim()))?;
    }
    Ok(())
}

/// Splits at the commas outside parentheses.
fn split_requirements(selector: &str) -> Result<Vec<&str>, String> {
    let mut requirements = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in selector.char_indices() {
        match character {
            '(' if depth == 0 => depth = 1,
            '(' => return Err("nested parentheses".to_string()),
            ')' if depth == 1 => depth = 0,
            ')' => return Err("')' without '('".to_string()),
            ',' if depth == 0 => {
                requirements.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("'(' without ')'".to_string());
    }
    requirements.push(&selector[start..]);
    Ok(requirements)
}

fn check_requirement(requirement: &str) -> Result<(), String> {
    if requirement.is_empty() {
        return Err("empty; remove the extra comma".to_string());
    }
    if let Some(key) = requirement.strip_prefix('!') {
        return check_key(key.trim());
    }

    let key_end = requirement.find(|character: char| !is_key_character(character)).unwrap_or(requirement.len());
    let (key, rest) = requirement.split_at(key_end);
    if key.is_empty() {
        return Err("no label key before the operator".to_string());
    }
    check_key(key)?;
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(());
    }

    for operator in ["==", "!=", "="] {
        if let Some(value) = rest.strip_prefix(operator) {
            return check_value(value.trim());
        }
    }
    for operator in ['<', '>'] {
        if let Some(value) = rest.strip_prefix(operator) {
            let value = value.trim();
            return value.parse::<i64>().map(|_| ()).map_err(|_| format!("operator {operator} needs an integer value, got {value:?}"));
        }
    }
    for operator in ["notin", "in"] {
        if let Some(values) = rest.strip_prefix(operator).filter(|values| values.starts_with(|character: char| character == '(' || character.is_whitespace())) {
            return check_set(operator, values.trim());
        }
    }
    Err(format!("expected one of the operators =, ==, !=, in, notin, <, > after the key {key:?}"))
}

fn check_set(operator: &str, values: &str) -> Result<(), String> {
    let Some(inner) = values.strip_prefix('(').and_then(|values| values.strip_suffix(')')) else {
        return Err(format!("operator {operator} needs a list of values in parentheses, such as (a,b)"));
    };
    if inner.trim().is_empty() {
        return Err(format!("operator {operator} needs at least one value"));
    }
    inner.split(',').try_for_each(|value| check_value(value.trim()))
}

fn is_key_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.' | '/')
}

/// Checks a label key: an optional DNS subdomain prefix and `/`, then a name.
fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let valid = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part.chars().all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !valid {
            return Err(format!("invalid key prefix {prefix:?}: expected a DNS subdomain such as patches.mojaloop.io"));
        }
    }
    if name.is_empty() || !is_label_name(name) {
        return Err(format!(
            "invalid label key {key:?}: the name part has 1 to {MAX_NAME} letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or a name.
fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        return Ok(());
    }
    Err(format!(
        "invalid label value {value:?}: a value has at most {MAX_NAME} letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    ))
}

fn is_label_name(name: &str) -> bool {
    let alphanumeric = |character: Option<char>| character.is_some_and(|character| character.is_ascii_alphanumeric());
    name.len() <= MAX_NAME
        && alphanumeric(name.chars().next())
        && alphanumeric(name.chars().last())
        && name.chars().all(|character| character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::empty("")]
    #[case::default_selector("patches.mojaloop.io/enabled=true")]
    #[case::double_equals("tier==hub")]
    #[case::not_equals("tier != hub")]
    #[case::exists("patches.mojaloop.io/enabled")]
    #[case::not_exists("!patches.mojaloop.io/mode")]
    #[case::empty_value("tier=")]
    #[case::set("tier in (hub, edge),env notin (dev)")]
    #[case::greater_than("generation>2")]
    #[case::several("a=b, c!=d ,e")]
    fn selector_valid(#[case] selector: &str) {
        assert_eq!(check(selector), Ok(()));
    }

    #[rstest]
    #[case::only_operators("===", "no label key")]
    #[case::missing_key("=true", "no label key")]
    #[case::trailing_comma("a=b,", "remove the extra comma")]
    #[case::bad_value("a=b c", "invalid label value \"b c\"")]
    #[case::bad_key_name("Bad_Key_=x", "invalid label key")]
    #[case::uppercase_prefix("Example.org/a=b", "invalid key prefix")]
    #[case::unknown_operator("a ~ b", "expected one of the operators")]
    #[case::set_without_parentheses("a in b", "in parentheses")]
    #[case::empty_set("a in ()", "at least one value")]
    #[case::unclosed_set("a in (b", "'(' without ')'")]
    #[case::non_integer_comparison("a > b", "integer value")]
    #[case::long_value("a=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "at most 63")]
    fn selector_invalid(#[case] selector: &str, #[case] expected: &str) {
        let error = check(selector).unwrap_err();

        assert!(error.contains(expected), "{selector}: {error}");
    }
}
