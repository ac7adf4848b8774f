//! The resource types kubesim serves: the built-in kinds Atoll touches and
//! every version of every CustomResourceDefinition created in it.

use std::sync::Arc;

use serde_json::Value;

/// An extra column `kubectl get` prints (CRD `additionalPrinterColumns`).
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `date`, ...).
    pub type_: String,
    /// JSONPath into the object (`.status.phase`).
    pub json_path: String,
    /// Description.
    pub description: String,
    /// Priority (0 shows in the default view).
    pub priority: i64,
}

/// One served resource in one group/version.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    /// API group, `""` for core.
    pub group: String,
    /// Version (`v1`).
    pub version: String,
    /// Plural resource name, used in paths.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`cm`).
    pub short_names: Vec<String>,
    /// Categories (`all`, `atoll`).
    pub categories: Vec<String>,
    /// Whether the `status` subresource exists (the main endpoint then
    /// ignores status and `/status` ignores everything else).
    pub status_subresource: bool,
    /// The openAPIV3Schema for custom resources.
    pub schema: Option<Arc<Value>>,
    /// Extra columns for `kubectl get`.
    pub printer_columns: Vec<PrinterColumn>,
    /// Whether the type comes from a CRD.
    pub custom: bool,
    /// Whether this version is the one objects are stored as.
    pub storage: bool,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `api_version` is this type's (`api_version()`, without
    /// building it).
    pub fn is_api_version(&self, api_version: &str) -> bool {
        if self.group.is_empty() {
            api_version == self.version
        } else {
            api_version
                .strip_prefix(self.group.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(self.version.as_str())
        }
    }

    /// The key objects are stored under: shared by all versions of a resource.
    /// (`events.k8s.io` Events are core Events: see
    /// [`conversion`](crate::kubesim::conversion).)
    pub fn store_key(&self) -> StoreKind {
        let (group, plural) = crate::kubesim::conversion::stored_as(&self.group, &self.plural);
        StoreKind {
            group: group.to_owned(),
            plural: plural.to_owned(),
        }
    }

    /// The error-message subject.
    pub fn subject(&self) -> crate::kubesim::error::Subject<'_> {
        crate::kubesim::error::Subject {
            group: &self.group,
            resource: &self.plural,
        }
    }

    /// Whether the `scale` subresource exists (Deployments, StatefulSets).
    pub fn scale_subresource(&self) -> bool {
        self.group == "apps" && matches!(self.plural.as_str(), "deployments" | "statefulsets")
    }

    /// Verbs listed in discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// Identifies a resource independently of version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreKind {
    /// API group.
    pub group: String,
    /// Plural.
    pub plural: String,
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "namespaces", "Namespace", false, &["ns"], true),
    b("", "v1", "secrets", "Secret", true, &[], false),
    b("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
    b("", "v1", "services", "Service", true, &["svc"], true),
    b(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    b("", "v1", "pods", "Pod", true, &["po"], true),
    b("", "v1", "events", "Event", true, &["ev"], false),
    b(
        "",
        "v1",
        "resourcequotas",
        "ResourceQuota",
        true,
        &["quota"],
        true,
    ),
    b(
        "",
        "v1",
        "limitranges",
        "LimitRange",
        true,
        &["limits"],
        false,
    ),
    b(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        true,
    ),
    b("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
    b(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        &[],
        false,
    ),
    b(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
    b(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        &["sts"],
        true,
    ),
    b(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        &["ev"],
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        &["ing"],
        true,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        &[],
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        false,
        &[],
        true,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        false,
        &[],
        false,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
];

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        plural,
        kind,
        namespaced,
        short_names,
        status,
    }
}

/// Kinds kubectl lists under `kubectl get all`.
const IN_CATEGORY_ALL: &[&str] = &["pods", "services", "deployments", "statefulsets"];

fn column(name: &str, type_: &str, json_path: &str) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        json_path: json_path.into(),
        description: String::new(),
        priority: 0,
    }
}

/// A few columns `kubectl get` shows for built-in kinds.
fn builtin_columns(group: &str, plural: &str) -> Vec<PrinterColumn> {
    match plural {
        "namespaces" | "persistentvolumeclaims" => {
            vec![column("Status", "string", ".status.phase")]
        }
        "pods" => vec![
            column("Status", "string", ".status.phase"),
            column(
                "Restarts",
                "integer",
                ".status.containerStatuses[0].restartCount",
            ),
        ],
        "deployments" | "statefulsets" => vec![
            column("Replicas", "integer", ".spec.replicas"),
            column("Ready", "integer", ".status.readyReplicas"),
            column("Available", "integer", ".status.availableReplicas"),
        ],
        "services" => vec![
            column("Type", "string", ".spec.type"),
            column("Cluster-IP", "string", ".spec.clusterIP"),
        ],
        "ingresses" => vec![
            column("Class", "string", ".spec.ingressClassName"),
            column("Hosts", "string", ".spec.rules[0].host"),
        ],
        "leases" => vec![column("Holder", "string", ".spec.holderIdentity")],
        "endpointslices" => vec![column("AddressType", "string", ".addressType")],
        "events" => vec![
            column("Type", "string", ".type"),
            column("Reason", "string", ".reason"),
            // The same Events: `note` is core's `message`.
            if group == crate::kubesim::conversion::EVENTS_GROUP {
                column("Message", "string", ".note")
            } else {
                column("Message", "string", ".message")
            },
        ],
        _ => Vec::new(),
    }
}

/// Every served resource type.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
}

impl Registry {
    /// The built-in kinds only.
    pub fn builtin() -> Self {
        let types = BUILTINS
            .iter()
            .map(|b| {
                Arc::new(ResourceType {
                    group: b.group.into(),
                    version: b.version.into(),
                    plural: b.plural.into(),
                    singular: b.kind.to_ascii_lowercase(),
                    kind: b.kind.into(),
                    namespaced: b.namespaced,
                    short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
                    categories: if IN_CATEGORY_ALL.contains(&b.plural) {
                        vec!["all".into()]
                    } else {
                        Vec::new()
                    },
                    status_subresource: b.status,
                    schema: None,
                    printer_columns: builtin_columns(b.group, b.plural),
                    custom: false,
                    storage: true,
                })
            })
            .collect();
        Self { types }
    }

    /// Replaces the CRD-served types with those the given (stored) CRDs
    /// define; a CRD being deleted is served until it is gone.
    pub fn set_custom(&mut self, crds: &[Arc<Value>]) {
        self.types.retain(|t| !t.custom);
        for crd in crds {
            self.types
                .extend(types_of_crd(crd).into_iter().map(Arc::new));
        }
    }

    /// All types.
    pub fn all(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// The type served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The storage version's type of a stored resource.
    pub fn storage_type(&self, kind: &StoreKind) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|t| t.group == kind.group && t.plural == kind.plural)
            .max_by_key(|t| t.storage)
            .cloned()
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn types_of_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(plural), Some(kind)) = (
        spec["group"].as_str(),
        names["plural"].as_str(),
        names["kind"].as_str(),
    ) else {
        return Vec::new();
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let Some(versions) = spec["versions"].as_array() else {
        return Vec::new();
    };
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .filter_map(|v| {
            let version = v["name"].as_str()?;
            let schema = &v["schema"]["openAPIV3Schema"];
            let printer_columns = v["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: c["name"].as_str().unwrap_or_default().into(),
                            type_: c["type"].as_str().unwrap_or("string").into(),
                            json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
                            description: c["description"].as_str().unwrap_or_default().into(),
                            priority: c["priority"].as_i64().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(ResourceType {
                group: group.into(),
                version: version.into(),
                plural: plural.into(),
                singular: names["singular"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| kind.to_ascii_lowercase()),
                kind: kind.into(),
                namespaced,
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status_subresource: v["subresources"]["status"].is_object(),
                schema: (!schema.is_null()).then(|| Arc::new(schema.clone())),
                printer_columns,
                custom: true,
                storage: v["storage"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}
