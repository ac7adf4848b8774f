//! EndpointSlice validation, as `pkg/apis/discovery/validation` does it
//! for the fields a Service's traffic depends on: the address type, the
//! number and form of each endpoint's addresses, and the ports' names and
//! protocols.
//!
//! One rule is left out on purpose: the real server refuses loopback
//! addresses (127.0.0.0/8, ::1) in IPv4 and IPv6 slices, but nodesim's pod
//! IPs are loopback addresses (every pod shares this host), so kubesim
//! accepts them; on a real API server no slice can point at a nodesim pod.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::{cause, dns_label, dns_subdomain};
use crate::kubesim::error::Cause;

/// The address types the API accepts, in its order.
const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;

fn supported(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rules on every write of an EndpointSlice; an update that leaves the
/// endpoints as they were is not judged on them (`old`: the slice it
/// replaces), as the real server does.
pub fn endpoint_slice(object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let address_type = object["addressType"].as_str().unwrap_or_default();
    if address_type.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "addressType",
            "Required value".into(),
        ));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        causes.push(cause(
            "FieldValueNotSupported",
            "addressType",
            format!(
                "Unsupported value: \"{address_type}\": supported values: {}",
                supported(ADDRESS_TYPES)
            ),
        ));
    }
    causes.extend(ports(
        object["ports"].as_array().map_or(&[][..], Vec::as_slice),
    ));
    if old.is_some_and(|old| old["endpoints"] == object["endpoints"]) {
        return causes;
    }
    let endpoints = object["endpoints"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if endpoints.len() > MAX_ENDPOINTS {
        causes.push(cause(
            "FieldValueTooMany",
            "endpoints",
            format!(
                "Too many: {}: must have at most {MAX_ENDPOINTS} items",
                endpoints.len()
            ),
        ));
        return causes;
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        let field = format!("endpoints[{i}].addresses");
        let addresses = endpoint["addresses"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        if addresses.is_empty() {
            causes.push(cause(
                "FieldValueRequired",
                &field,
                "Required value: must contain at least 1 address".into(),
            ));
        } else if addresses.len() > MAX_ADDRESSES {
            causes.push(cause(
                "FieldValueTooMany",
                &field,
                format!(
                    "Too many: {}: must have at most {MAX_ADDRESSES} items",
                    addresses.len()
                ),
            ));
        }
        for (j, address) in addresses.iter().enumerate() {
            let address = address.as_str().unwrap_or_default();
            causes.extend(check_address(address_type, address, &field, j));
        }
    }
    causes
}

/// One address of an endpoint, by the slice's address type (an unknown
/// type was reported already).
fn check_address(address_type: &str, address: &str, field: &str, index: usize) -> Vec<Cause> {
    let at = format!("{field}[{index}]");
    let invalid = |field: &str, why: &str| {
        vec![cause(
            "FieldValueInvalid",
            field,
            format!("Invalid value: \"{address}\": {why}"),
        )]
    };
    let ip = match address_type {
        "IPv4" | "IPv6" => match address.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                return invalid(
                    &at,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                );
            }
        },
        "FQDN" if address.split('.').count() < 2 => {
            return invalid(
                &at,
                "should be a domain with at least two segments separated by dots",
            );
        }
        "FQDN" if !dns_subdomain(&address.to_ascii_lowercase()) => {
            return invalid(&at, "a lowercase RFC 1123 subdomain");
        }
        _ => return Vec::new(),
    };
    match (address_type, ip) {
        ("IPv4", IpAddr::V6(_)) => invalid(field, "must be an IPv4 address"),
        ("IPv6", IpAddr::V4(_)) => invalid(field, "must be an IPv6 address"),
        (_, ip) if ip.is_unspecified() => invalid(&at, &format!("may not be unspecified ({ip})")),
        (_, IpAddr::V4(v4)) if v4.is_link_local() => invalid(
            &at,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ),
        (_, IpAddr::V4(v4)) if link_local_multicast_v4(v4) => invalid(
            &at,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ),
        (_, IpAddr::V6(v6)) if v6.is_unicast_link_local() => invalid(
            &at,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ),
        (_, IpAddr::V6(v6)) if link_local_multicast_v6(v6) => invalid(
            &at,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ),
        _ => Vec::new(),
    }
}

fn link_local_multicast_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    (a, b, c) == (224, 0, 0)
}

fn link_local_multicast_v6(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xff0f == 0xff02
}

/// Port names are DNS labels (or empty), unique; protocols TCP, UDP or
/// SCTP (defaulted to TCP before this runs).
fn ports(ports: &[Value]) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let name = port["name"].as_str().unwrap_or_default();
        if !name.is_empty() && !dns_label(name) {
            causes.push(cause(
                "FieldValueInvalid",
                &format!("ports[{i}].name"),
                format!("Invalid value: \"{name}\": {}", super::LABEL_NAME_RULE),
            ));
        }
        if names.contains(&name) {
            causes.push(cause(
                "FieldValueDuplicate",
                &format!("ports[{i}].name"),
                format!("Duplicate value: \"{name}\""),
            ));
        } else {
            names.push(name);
        }
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        if !PROTOCOLS.contains(&protocol) {
            causes.push(cause(
                "FieldValueNotSupported",
                &format!("ports[{i}].protocol"),
                format!(
                    "Unsupported value: \"{protocol}\": supported values: {}",
                    supported(PROTOCOLS)
                ),
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(object: Value) -> Vec<(String, String)> {
        endpoint_slice(&object, None)
            .into_iter()
            .map(|c| (c.reason, c.field))
            .collect()
    }

    #[test]
    fn a_good_slice_passes_and_loopback_pod_ips_are_accepted() {
        let slice = json!({
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.64.0.9"], "conditions": {"ready": true}},
                          {"addresses": ["10.1.2.3"]}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "", "port": 9}]
        });
        assert_eq!(fields(slice), []);
    }

    #[test]
    fn address_type_is_required_and_known() {
        assert_eq!(
            fields(json!({"endpoints": []})),
            [("FieldValueRequired".into(), "addressType".into())]
        );
        let causes = endpoint_slice(&json!({"addressType": "IPv5"}), None);
        assert_eq!(causes[0].reason, "FieldValueNotSupported");
        assert!(
            causes[0]
                .message
                .ends_with("supported values: \"FQDN\", \"IPv4\", \"IPv6\""),
            "{}",
            causes[0].message
        );
    }

    #[test]
    fn every_endpoint_has_one_to_a_hundred_valid_addresses() {
        let many: Vec<String> = (0..101).map(|i| format!("10.0.0.{i}")).collect();
        let slice = json!({
            "addressType": "IPv4",
            "endpoints": [{"addresses": []}, {"conditions": {}}, {"addresses": many},
                          {"addresses": ["not-an-ip", "::1", "0.0.0.0", "169.254.1.1"]}]
        });
        assert_eq!(
            fields(slice),
            [
                ("FieldValueRequired".into(), "endpoints[0].addresses".into()),
                ("FieldValueRequired".into(), "endpoints[1].addresses".into()),
                ("FieldValueTooMany".into(), "endpoints[2].addresses".into()),
                (
                    "FieldValueInvalid".into(),
                    "endpoints[3].addresses[0]".into()
                ),
                ("FieldValueInvalid".into(), "endpoints[3].addresses".into()),
                (
                    "FieldValueInvalid".into(),
                    "endpoints[3].addresses[2]".into()
                ),
                (
                    "FieldValueInvalid".into(),
                    "endpoints[3].addresses[3]".into()
                ),
            ]
        );
        let fqdn = json!({"addressType": "FQDN", "endpoints": [{"addresses": ["gate.example.com", "gate"]}]});
        assert_eq!(
            fields(fqdn.clone()),
            [(
                "FieldValueInvalid".into(),
                "endpoints[0].addresses[1]".into()
            )]
        );
        assert!(
            endpoint_slice(&fqdn, Some(&fqdn)).is_empty(),
            "unchanged endpoints are not judged again"
        );
    }

    #[test]
    fn port_names_are_unique_labels_and_protocols_known() {
        let slice = json!({
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 1}, {"name": "http", "port": 2},
                      {"name": "Bad_Name", "port": 3}, {"name": "q", "protocol": "QUIC"}]
        });
        assert_eq!(
            fields(slice),
            [
                ("FieldValueDuplicate".into(), "ports[1].name".into()),
                ("FieldValueInvalid".into(), "ports[2].name".into()),
                ("FieldValueNotSupported".into(), "ports[3].protocol".into()),
            ]
        );
    }
}
