//! `--shard i/n`: which replica polls which gateway, by rendezvous (highest random weight)
//! hashing of the gateway's name. Every replica decides alone and agrees with the others; adding or
//! removing a replica moves only the gateways that must move (about 1/n of them).

use std::fmt;
use std::str::FromStr;

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

/// The shard, out of `count`, that owns `name`.
pub fn owner(name: &str, count: u32) -> u32 {
    (0..count).max_by_key(|i| weight(name, *i)).unwrap_or(0)
}

fn weight(name: &str, shard: u32) -> u64 {
    stable_hash(name.bytes().chain(shard.to_le_bytes()))
}

/// A hash that is the same on every replica and across restarts: FNV-1a, then the splitmix64
/// finaliser, as FNV alone leaves the high bits clustered for names like `gw-1`, `gw-2`.
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

    #[test]
    fn adding_a_replica_moves_only_its_share() {
        let all = names(10_000);
        let moved = all.iter().filter(|n| owner(n, 4) != owner(n, 5)).count();
        // The new replica takes about a fifth; nothing moves between the old four.
        assert!((1700..2300).contains(&moved), "{moved} moved");
        assert!(all
            .iter()
            .all(|n| owner(n, 5) == 4 || owner(n, 4) == owner(n, 5)));
    }

    #[test]
    fn parses_i_of_n() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert!("3/3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }
}
