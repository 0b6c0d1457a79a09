//! `--shard i/n`: which replica polls which gateway. The rule is Prometheus' `hashmod` relabel
//! action over the gateway name: the MD5 digest of the name, its last 8 bytes read as a big-endian
//! `u64`, modulo `n`. So `--shard i/n` owns exactly the gateways that a Prometheus scrape job with
//! `hashmod` (modulus `n`, one source label holding the gateway name) and `keep` of `i` sends to
//! this replica, and every replica decides alone and agrees with the others. As with any `hashmod`,
//! changing `n` moves most gateways to another shard.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

/// This replica's shard: `index` of `count`, counted from 0 as Prometheus' `hashmod` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether this replica polls the gateway named `name`.
    pub fn owns(&self, name: &str) -> bool {
        owner(name, self.count) == self.index
    }
}

/// The shard, out of `count`, that owns `name`: Prometheus' `hashmod` of the name
/// (`model/relabel/relabel.go`: `binary.BigEndian.Uint64(md5.Sum(value)[8:]) % modulus`; with a
/// single source label the value is the label value itself, no separator).
pub fn owner(name: &str, count: u32) -> u32 {
    if count == 0 {
        return 0;
    }
    let digest = Md5::digest(name.as_bytes());
    let mut last = [0u8; 8];
    last.copy_from_slice(&digest[8..16]);
    // The remainder is below `count`, a u32.
    (u64::from_be_bytes(last) % u64::from(count)) as u32
}

/// A hash that is the same on every replica and across restarts: FNV-1a, then the splitmix64
/// finaliser, as FNV alone leaves the high bits clustered for names like `gw-1`, `gw-2`. The
/// scheduler takes each gateway's first-poll offset from it; sharding does not use it.
pub(crate) fn stable_hash(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a shard: write i/n with 0 <= i < n, e.g. 0/3");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("gateway-{i}")).collect()
    }

    #[test]
    fn every_gateway_has_exactly_one_owner() {
        for name in names(1000) {
            let owners = (0..5)
                .filter(|i| {
                    Shard {
                        index: *i,
                        count: 5,
                    }
                    .owns(&name)
                })
                .count();
            assert_eq!(owners, 1, "{name}");
        }
    }

    #[test]
    fn shards_are_balanced() {
        let mut counts = [0u32; 4];
        for name in names(10_000) {
            counts[owner(&name, 4) as usize] += 1;
        }
        for c in counts {
            assert!((2300..2700).contains(&c), "unbalanced: {counts:?}");
        }
    }

    /// Computed independently with Python's hashlib:
    /// `int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big") % n`.
    #[test]
    fn owner_is_prometheus_hashmod() {
        for (name, want) in [
            ("sales", [0, 0, 5]),
            ("support", [0, 0, 4]),
            ("brand", [1, 2, 6]),
            ("helpdesk", [0, 2, 5]),
            ("onprem", [0, 1, 6]),
            ("gateway-0", [1, 2, 5]),
            ("gw-1", [1, 2, 1]),
            ("a", [1, 1, 2]),
        ] {
            let got = [owner(name, 2), owner(name, 3), owner(name, 7)];
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(owner("anything", 1), 0);
    }

    #[test]
    fn parses_i_of_n() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert!("3/3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }
}
