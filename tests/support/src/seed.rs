//! Seeding registries with small real images.
//!
//! Each pushed image is an OCI image with one uncompressed layer that contains a
//! single file, `image-patch-test/reference`, whose content is the repository
//! and tag. Every tag thus gets its own layer, config and manifest, and so its
//! own digest, like a real re-release of an image would.

use crate::Result;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

/// A manifest digest, `sha256:<64 hex digits>`.
pub type Digest = String;

/// Returns an `oci-client` client that talks plain HTTP, as the test
/// registries and the fault proxy serve it.
pub fn http_client() -> Client {
    crate::install_crypto_provider();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

/// Pushes one small image per tag to `repository` at `registry` (`host:port`)
/// and returns the manifest digests in the order of `tags`.
#[tracing::instrument(skip(auth))]
pub async fn push_image(
    registry: &str,
    repository: &str,
    tags: &[&str],
    auth: &RegistryAuth,
) -> Result<Vec<Digest>> {
    let client = http_client();
    let mut digests = Vec::with_capacity(tags.len());
    for tag in tags {
        let reference = Reference::with_tag(
            registry.to_owned(),
            repository.to_owned(),
            (*tag).to_owned(),
        );
        let layer_tar = tar_with_file(
            "image-patch-test/reference",
            format!("{repository}:{tag}\n").as_bytes(),
        );
        let diff_id = format!("sha256:{}", hex(&Sha256::digest(&layer_tar)));
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "org.opencontainers.image.version": tag } },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        });
        let config = Config::oci_v1(serde_json::to_vec(&config).expect("JSON encodes"), None);
        let layer = ImageLayer::oci_v1(layer_tar, None);
        client
            .push(&reference, &[layer], config, auth, None)
            .await?;
        let digest = client.fetch_manifest_digest(&reference, auth).await?;
        tracing::debug!(%reference, %digest, "pushed");
        digests.push(digest);
    }
    Ok(digests)
}

/// Lists the tags of `repository` at `registry`, as the registry returns them.
pub async fn list_tags(
    registry: &str,
    repository: &str,
    auth: &RegistryAuth,
) -> Result<Vec<String>> {
    let reference = Reference::with_tag(
        registry.to_owned(),
        repository.to_owned(),
        "latest".to_owned(),
    );
    let response = http_client()
        .list_tags(&reference, auth, None, None)
        .await?;
    Ok(response.tags)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Builds a POSIX ustar archive that contains one regular file.
fn tar_with_file(path: &str, contents: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 512;
    let mut header = [0u8; BLOCK];
    let name = path.as_bytes();
    assert!(name.len() < 100, "ustar names are shorter than 100 bytes");
    header[..name.len()].copy_from_slice(name);
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", contents.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field set to spaces.
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|byte| u32::from(*byte)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());

    let padded = contents.len().div_ceil(BLOCK) * BLOCK;
    let mut archive = Vec::with_capacity(BLOCK + padded + 2 * BLOCK);
    archive.extend_from_slice(&header);
    archive.extend_from_slice(contents);
    archive.resize(BLOCK + padded, 0);
    // Two zero blocks end the archive.
    archive.resize(BLOCK + padded + 2 * BLOCK, 0);
    archive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_has_header_content_and_end_blocks() {
        let archive = tar_with_file("a/b", b"hello\n");
        assert_eq!(archive.len(), 512 * 4);
        assert_eq!(&archive[..3], b"a/b");
        assert_eq!(&archive[512..518], b"hello\n");
        assert_eq!(&archive[257..262], b"ustar");
    }
}
