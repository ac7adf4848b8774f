//! Certificates, keys and kubeconfigs, made with the `openssl` CLI.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;

use super::{RealKubeError, io};

/// A user and groups for a client certificate.
#[derive(Debug, Clone, Copy)]
pub(super) struct Subject<'a> {
    pub(super) user: &'a str,
    pub(super) groups: &'a [&'a str],
}

/// Escapes a value for openssl's `-subj /K=V/...` form.
fn subj_escape(value: &str) -> String {
    value
        .chars()
        .flat_map(|c| match c {
            '/' | '\\' | '+' | ',' | '=' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

async fn openssl(step: &str, args: &[&str]) -> Result<(), RealKubeError> {
    let out = tokio::process::Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io("running openssl (is it installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RealKubeError::Certificates {
            step: step.to_owned(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

pub(super) fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// Certificates and keys in one folder, signed by the folder's CA.
#[derive(Debug)]
pub(super) struct Pki {
    pub(super) dir: PathBuf,
}

impl Pki {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    async fn key(&self, name: &str) -> Result<PathBuf, RealKubeError> {
        let key = self.file(&format!("{name}.key"));
        openssl(
            &format!("{name} key"),
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                path_str(&key),
            ],
        )
        .await?;
        Ok(key)
    }

    /// A self-signed CA, `<name>.crt` and `<name>.key`.
    async fn ca(&self, name: &str, cn: &str) -> Result<(), RealKubeError> {
        let key = self.key(name).await?;
        let subj = format!("/CN={cn}");
        openssl(
            &format!("{name} certificate"),
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                path_str(&key),
                "-subj",
                &subj,
                "-days",
                "3650",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                "-out",
                path_str(&self.file(&format!("{name}.crt"))),
            ],
        )
        .await
    }

    /// A certificate signed by the CA `ca`; `extensions` are `-addext`
    /// values.
    async fn signed(
        &self,
        ca: &str,
        name: &str,
        subj: &str,
        extensions: &[&str],
    ) -> Result<(), RealKubeError> {
        let key = self.key(name).await?;
        let ca_crt = self.file(&format!("{ca}.crt"));
        let ca_key = self.file(&format!("{ca}.key"));
        let crt = self.file(&format!("{name}.crt"));
        let mut args = vec![
            "req",
            "-x509",
            "-new",
            "-key",
            path_str(&key),
            "-CA",
            path_str(&ca_crt),
            "-CAkey",
            path_str(&ca_key),
            "-subj",
            subj,
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment",
        ];
        for ext in extensions {
            args.extend(["-addext", ext]);
        }
        args.extend(["-out", path_str(&crt)]);
        openssl(&format!("{name} certificate"), &args).await
    }

    async fn serving(&self, name: &str) -> Result<(), RealKubeError> {
        let sans = format!(
            "subjectAltName=IP:127.0.0.1,IP:{},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
             DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local",
            service_ip()
        );
        self.signed(
            "ca",
            name,
            "/CN=kube-apiserver",
            &["extendedKeyUsage=serverAuth", &sans],
        )
        .await
    }

    pub(super) async fn client(
        &self,
        name: &str,
        subject: Subject<'_>,
    ) -> Result<(), RealKubeError> {
        let mut subj = String::new();
        for group in subject.groups {
            subj.push_str("/O=");
            subj.push_str(&subj_escape(group));
        }
        subj.push_str("/CN=");
        subj.push_str(&subj_escape(subject.user));
        self.signed("ca", name, &subj, &["extendedKeyUsage=clientAuth"])
            .await
    }

    /// A kubelet serving certificate for node `node` on 127.0.0.1
    /// (`kubelet-<node>.crt` and `.key`), signed by the cluster CA.
    pub(super) async fn kubelet_serving(&self, node: &str) -> Result<(), RealKubeError> {
        let name = format!("kubelet-{node}");
        let subj = format!("/O=system:nodes/CN=system:node:{}", subj_escape(node));
        let sans = format!("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{node}");
        self.signed("ca", &name, &subj, &["extendedKeyUsage=serverAuth", &sans])
            .await
    }

    /// The service-account signing key pair (`sa.key`, `sa.pub`).
    async fn service_account(&self) -> Result<(), RealKubeError> {
        let key = self.key("sa").await?;
        openssl(
            "service-account public key",
            &[
                "pkey",
                "-in",
                path_str(&key),
                "-pubout",
                "-out",
                path_str(&self.file("sa.pub")),
            ],
        )
        .await
    }

    /// A kubeconfig for the client certificate `name`, at `path`.
    pub(super) fn kubeconfig(
        &self,
        server: &str,
        name: &str,
        path: &Path,
    ) -> Result<(), RealKubeError> {
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "realkube", "cluster": {
                "server": server,
                "certificate-authority": self.file("ca.crt"),
            }}],
            "users": [{"name": name, "user": {
                "client-certificate": self.file(&format!("{name}.crt")),
                "client-key": self.file(&format!("{name}.key")),
            }}],
            "contexts": [{"name": "realkube", "context": {"cluster": "realkube", "user": name}}],
            "current-context": "realkube",
        });
        // JSON is YAML: kubectl and kube-rs read it as a kubeconfig.
        std::fs::write(path, doc.to_string()).map_err(io(format!("writing {}", path.display())))
    }
}

/// The first address of the Service range: the `kubernetes` Service.
fn service_ip() -> &'static str {
    "10.96.0.1"
}

/// Every certificate and key the control plane needs: the cluster CA, the
/// front proxy's CA and client, the API server's serving certificate, the
/// service-account key pair and the clients of the admin, the API server
/// towards kubelets, the controller manager and the scheduler.
pub(super) async fn control_plane(pki: &Pki) -> Result<(), RealKubeError> {
    pki.ca("ca", "atoll-realkube-ca").await?;
    // The front proxy (request-header authentication): what aggregated
    // API servers, and the controller manager's and scheduler's own
    // authentication, expect to find.
    pki.ca("front-proxy-ca", "atoll-realkube-front-proxy-ca")
        .await?;
    pki.signed(
        "front-proxy-ca",
        "front-proxy-client",
        "/CN=front-proxy-client",
        &["extendedKeyUsage=clientAuth"],
    )
    .await?;
    pki.serving("serving").await?;
    pki.service_account().await?;
    pki.client(
        "admin",
        Subject {
            user: "atoll-admin",
            groups: &["system:masters"],
        },
    )
    .await?;
    // The API server's client certificate towards kubelets
    // (`--kubelet-client-certificate`), named as kubeadm names it.
    pki.client(
        "apiserver-kubelet-client",
        Subject {
            user: "kube-apiserver-kubelet-client",
            groups: &["kubeadm:cluster-admins"],
        },
    )
    .await?;
    pki.client(
        "controller-manager",
        Subject {
            user: "system:kube-controller-manager",
            groups: &[],
        },
    )
    .await?;
    pki.client(
        "scheduler",
        Subject {
            user: "system:kube-scheduler",
            groups: &[],
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_subject_values() {
        assert_eq!(subj_escape("a/b+c"), "a\\/b\\+c");
        assert_eq!(subj_escape("system:masters"), "system:masters");
    }
}
