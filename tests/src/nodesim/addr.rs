//! Loopback addresses for pods and Services.
//!
//! Every pod and every Service gets its own address in 127.0.0.0/8 (all of
//! which is loopback on Linux), so each can use the ports it declares, as in a
//! cluster. Pods draw from 127.64.0.0–127.127.255.255, Services from
//! 127.128.0.0–127.191.255.255. The starting point is random per pool so that
//! several simulators on one machine (parallel tests) rarely meet, and an
//! address is only handed out after its ports were found free.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

/// Which block of loopback addresses a pool hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// 127.64.0.0/10: pod IPs.
    Pods,
    /// 127.128.0.0/10: Service addresses.
    Services,
}

/// Hands out loopback addresses, never the same one twice while it is held.
#[derive(Debug)]
pub struct AddressPool {
    base: u32,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    next: u32,
    held: HashSet<Ipv4Addr>,
}

const BLOCK_SIZE: u32 = 1 << 22;

impl AddressPool {
    /// A pool over `block`, starting at a random offset.
    pub fn new(block: Block) -> Self {
        let base = match block {
            Block::Pods => u32::from(Ipv4Addr::new(127, 64, 0, 0)),
            Block::Services => u32::from(Ipv4Addr::new(127, 128, 0, 0)),
        };
        Self {
            base,
            state: Mutex::new(PoolState {
                next: random_u32() % BLOCK_SIZE,
                held: HashSet::new(),
            }),
        }
    }

    /// The next free address where every port of `ports` can be bound.
    pub fn allocate(&self, ports: &[u16]) -> Option<Ipv4Addr> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..4096 {
            let offset = state.next % BLOCK_SIZE;
            state.next = state.next.wrapping_add(1);
            let ip = Ipv4Addr::from(self.base + offset);
            let last = ip.octets()[3];
            if last == 0 || last == 255 || state.held.contains(&ip) {
                continue;
            }
            if ports.iter().all(|&port| port_free(ip, port)) {
                state.held.insert(ip);
                return Some(ip);
            }
        }
        None
    }

    /// Gives an address back.
    pub fn release(&self, ip: Ipv4Addr) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.held.remove(&ip);
    }
}

fn port_free(ip: Ipv4Addr, port: u16) -> bool {
    TcpListener::bind(SocketAddr::from((ip, port))).is_ok()
}

/// A random number from the standard library's randomly keyed hasher, enough
/// to spread starting points; not for secrets.
pub fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_loopback_and_reusable_after_release() {
        let pool = AddressPool::new(Block::Pods);
        let a = pool.allocate(&[8080]).expect("address");
        let b = pool.allocate(&[8080]).expect("address");
        assert_ne!(a, b);
        assert!(a.is_loopback() && b.is_loopback());
        assert_eq!(a.octets()[1] & 0xc0, 64);
        pool.release(a);
        let services = AddressPool::new(Block::Services);
        let s = services.allocate(&[]).expect("address");
        assert!(s.octets()[1] >= 128 && s.octets()[1] < 192);
    }
}
