//! Registry credentials from `kubernetes.io/dockerconfigjson` pull Secrets.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use crate::secret::Secret;

/// A user name and password for one registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: Secret,
}

/// A pull Secret that cannot be used. The message never contains the Secret's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The document is not a Docker config JSON.
    #[error("not a Docker config JSON document: {0}")]
    Format(String),
    /// An entry's `auth` field is not base64 of `user:password`.
    #[error("entry for {registry} has an `auth` field that is not base64 of user:password")]
    Auth {
        /// The registry key of the entry.
        registry: String,
    },
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
}

/// Parses a `.dockerconfigjson` document into credentials keyed by normalized registry host.
/// Entries with neither `username`/`password` nor `auth` (an identity token, for example) are skipped.
pub fn parse_docker_config(document: &[u8]) -> Result<BTreeMap<String, Credential>, CredentialError> {
    // serde_json's message names a line and column, never the content.
    let config: DockerConfig = serde_json::from_slice(document).map_err(|error| CredentialError::Format(error.to_string()))?;
    let mut credentials = BTreeMap::new();
    for (key, entry) in config.auths {
        let credential = match (entry.username, entry.password, entry.auth) {
            (Some(username), Some(password), _) => Credential { username, password: Secret::new(password) },
            (_, _, Some(auth)) => decode_auth(&auth).ok_or_else(|| CredentialError::Auth { registry: key.clone() })?,
            _ => continue,
        };
        credentials.insert(normalize_registry_key(&key), credential);
    }
    Ok(credentials)
}

fn decode_auth(auth: &str) -> Option<Credential> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(Credential { username: username.to_string(), password: Secret::new(password) })
}

/// Normalizes a Docker config registry key (`https://index.docker.io/v1/`, `quay.io`,
/// `http://127.0.0.1:5000`) to the host form of [`common::Repository::registry`].
pub fn normalize_registry_key(key: &str) -> String {
    let host = key.trim();
    let host = host.strip_prefix("https://").or_else(|| host.strip_prefix("http://")).unwrap_or(host);
    let host = host.split('/').next().unwrap_or(host).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("https://index.docker.io/v1/", "docker.io")]
    #[case("registry-1.docker.io", "docker.io")]
    #[case("docker.io", "docker.io")]
    #[case("http://127.0.0.1:5000", "127.0.0.1:5000")]
    #[case("Quay.IO/some/path", "quay.io")]
    fn registry_key_normalization(#[case] key: &str, #[case] expected: &str) {
        assert_eq!(normalize_registry_key(key), expected);
    }

    #[test]
    fn docker_config_username_password_and_auth() {
        let document = br#"{"auths": {
            "https://index.docker.io/v1/": {"username": "hub", "password": "hub-pass"},
            "127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="},
            "token.example": {"identitytoken": "abc"}
        }}"#;

        let credentials = parse_docker_config(document).unwrap();

        assert_eq!(credentials.len(), 2);
        assert_eq!(credentials["docker.io"].username, "hub");
        assert_eq!(credentials["docker.io"].password.expose(), "hub-pass");
        assert_eq!(credentials["127.0.0.1:5000"].username, "user");
        assert_eq!(credentials["127.0.0.1:5000"].password.expose(), "pa:ss");
    }

    #[test]
    fn docker_config_errors_hide_content() {
        let bad_auth = br#"{"auths": {"r.example": {"auth": "bm90LXNlcGFyYXRlZA=="}}}"#;
        let not_json = b"password=hunter2";

        let auth_error = parse_docker_config(bad_auth).unwrap_err();
        let format_error = parse_docker_config(not_json).unwrap_err();

        assert_eq!(auth_error, CredentialError::Auth { registry: "r.example".into() });
        assert!(!format_error.to_string().contains("hunter2"));
    }
}
