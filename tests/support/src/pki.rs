//! Certificates and keys of the control plane, made with the `openssl` command.
//!
//! One CA signs the API server's serving certificate and the client
//! certificates of the admin and the controller-manager. The API server trusts
//! that CA for client certificates, so the certificate subject is the user:
//! the admin is in `system:masters`, and the controller-manager is the user
//! `system:kube-controller-manager`, to which RBAC's bootstrap policy grants
//! its role. A
//! separate P-256 key signs service-account tokens.

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Subject alternative names of the API server's serving certificate: loopback,
/// and the `kubernetes` Service that in-cluster clients use (first IP of
/// 10.0.0.0/24).
const APISERVER_SANS: &str = "IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,\
DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local";

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug)]
pub(crate) struct KeyPair {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// The files of the control plane's public key infrastructure.
#[derive(Clone, Debug)]
pub(crate) struct Pki {
    pub(crate) ca: KeyPair,
    pub(crate) apiserver: KeyPair,
    pub(crate) admin: KeyPair,
    pub(crate) controller_manager: KeyPair,
    pub(crate) service_account_key: PathBuf,
    pub(crate) service_account_public_key: PathBuf,
}

impl Pki {
    /// Creates a CA, the serving and client certificates and the
    /// service-account signing key in `dir`.
    pub(crate) fn create(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir)
            .map_err(|error| Error::io(format!("cannot create {}", dir.display()), error))?;
        let ca = KeyPair {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
        };
        generate_key(&ca.key)?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            path(&ca.key),
            "-subj",
            "/CN=image-patch-test-ca",
            "-days",
            "30",
            "-out",
            path(&ca.cert),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ])?;
        let apiserver = issue(
            dir,
            &ca,
            "apiserver",
            "/CN=kube-apiserver",
            "serverAuth",
            Some(APISERVER_SANS),
        )?;
        let admin = issue(
            dir,
            &ca,
            "admin",
            "/O=system:masters/CN=image-patch-test-admin",
            "clientAuth",
            None,
        )?;
        let controller_manager = issue(
            dir,
            &ca,
            "controller-manager",
            "/CN=system:kube-controller-manager",
            "clientAuth",
            None,
        )?;
        let service_account_key = dir.join("service-account.key");
        let service_account_public_key = dir.join("service-account.pub");
        generate_key(&service_account_key)?;
        openssl(&[
            "pkey",
            "-in",
            path(&service_account_key),
            "-pubout",
            "-out",
            path(&service_account_public_key),
        ])?;
        Ok(Pki {
            ca,
            apiserver,
            admin,
            controller_manager,
            service_account_key,
            service_account_public_key,
        })
    }
}

impl Pki {
    /// Issues a serving certificate for `hosts` (IP addresses or DNS names),
    /// signed by the CA, as files `<name>.crt` and `<name>.key` in `dir`.
    pub(crate) fn issue_serving(&self, dir: &Path, name: &str, hosts: &[&str]) -> Result<KeyPair> {
        let sans = hosts
            .iter()
            .map(|host| {
                if host.parse::<std::net::IpAddr>().is_ok() {
                    format!("IP:{host}")
                } else {
                    format!("DNS:{host}")
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        let common_name = hosts.first().copied().unwrap_or(name);
        issue(
            dir,
            &self.ca,
            name,
            &format!("/CN={common_name}"),
            "serverAuth",
            Some(&sans),
        )
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn generate_key(key: &Path) -> Result<()> {
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path(key),
    ])
}

/// Issues a certificate signed by `ca` with the extended key usage `usage`.
fn issue(
    dir: &Path,
    ca: &KeyPair,
    name: &str,
    subject: &str,
    usage: &str,
    sans: Option<&str>,
) -> Result<KeyPair> {
    let pair = KeyPair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    generate_key(&pair.key)?;
    let csr = dir.join(format!("{name}.csr"));
    openssl(&[
        "req",
        "-new",
        "-key",
        path(&pair.key),
        "-subj",
        subject,
        "-out",
        path(&csr),
    ])?;
    let extensions = dir.join(format!("{name}.ext"));
    let mut text = format!(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
    );
    if let Some(sans) = sans {
        text.push_str(&format!("subjectAltName={sans}\n"));
    }
    std::fs::write(&extensions, text)
        .map_err(|error| Error::io(format!("cannot write {}", extensions.display()), error))?;
    let serial = format!("0x{:016x}{:08x}", random_u64(), std::process::id());
    openssl(&[
        "x509",
        "-req",
        "-in",
        path(&csr),
        "-CA",
        path(&ca.cert),
        "-CAkey",
        path(&ca.key),
        "-set_serial",
        &serial,
        "-days",
        "30",
        "-extfile",
        path(&extensions),
        "-out",
        path(&pair.cert),
    ])?;
    Ok(pair)
}

/// Returns a serial-number ingredient that differs between certificates.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

fn openssl(args: &[&str]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                Error::ToolsMissing("openssl is missing: run tests/tools/install-deps.sh".into())
            } else {
                Error::io("cannot run openssl", error)
            }
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::CommandFailed {
            command: format!("openssl {}", args.join(" ")),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
