//! Consistent hashing on a ring (ketama-style), for ip_hash and url_hash.
//!
//! Each member owns `weight x points_per_weight` points, placed by hashing
//! "addr#n" with a fixed-seed hash of the address as written, so every sluice
//! process with the same config builds the same ring. A key goes to the
//! owner of the first point at or after its hash. Removing a member removes
//! only its points, so only its keys move; an unusable member is skipped by
//! walking on to the next point, so keys of usable members never move.

use super::{Balancer, Member};

/// Points per unit of weight, reduced for very large pools to keep the
/// ring under `MAX_POINTS`.
const POINTS_PER_WEIGHT: u64 = 160;
const MAX_POINTS: u64 = 1 << 20;

pub struct Ring {
    /// (point, member index), sorted by point.
    points: Vec<(u64, u32)>,
    /// For each value of a key's top `index_bits` bits, the position of the
    /// first point with those top bits or more, plus one final entry: a key
    /// is then searched for among the few points of its bucket, not the whole
    /// ring. At 1,000 backends the ring has 160,000 points (2.5 MB): a plain
    /// binary search there is 17 dependent cache misses, about 220 ns a pick.
    index: Vec<u32>,
    index_bits: u32,
}

/// FNV-1a over the bytes, then the murmur3 64-bit finaliser for avalanche.
/// Fixed, portable and seedless: the same on every machine and every run.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Ring {
    pub fn new(members: &[Member]) -> Ring {
        let total_weight: u64 = members.iter().map(|m| m.weight as u64).sum();
        let per_weight = (MAX_POINTS / total_weight.max(1)).clamp(1, POINTS_PER_WEIGHT);
        let mut points = Vec::with_capacity((total_weight * per_weight) as usize);
        for (i, m) in members.iter().enumerate() {
            for n in 0..m.weight as u64 * per_weight {
                let label = format!("{}#{n}", m.backend.addr);
                points.push((hash_bytes(label.as_bytes()), i as u32));
            }
        }
        points.sort_unstable();
        // About one point per bucket on average.
        let index_bits = (usize::BITS - points.len().leading_zeros()).saturating_sub(1);
        let buckets = 1usize << index_bits;
        let mut index = Vec::with_capacity(buckets + 1);
        let mut at = 0usize;
        for b in 0..buckets as u64 {
            while at < points.len() && bucket(points[at].0, index_bits) < b {
                at += 1;
            }
            index.push(at as u32);
        }
        index.push(points.len() as u32);
        Ring {
            points,
            index,
            index_bits,
        }
    }

    /// The position of the first point at or after `key` (may be the
    /// ring's length: then the walk wraps to the first point).
    fn first_at_or_after(&self, key: u64) -> usize {
        let b = bucket(key, self.index_bits) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        lo + self.points[lo..hi].partition_point(|&(p, _)| p < key)
    }
}

/// A hash's top `bits` bits.
fn bucket(h: u64, bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        h >> (64 - bits)
    }
}

impl Balancer for Ring {
    fn pick(
        &self,
        members: &[Member],
        key: Option<u64>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let key = key.unwrap_or_else(|| fastrand::u64(..));
        let start = self.first_at_or_after(key);
        let mut tried = 0usize;
        let mut last = u32::MAX;
        for k in 0..self.points.len() {
            let (_, i) = self.points[(start + k) % self.points.len()];
            if i == last {
                continue;
            }
            last = i;
            if usable(i as usize) {
                return Some(i as usize);
            }
            tried += 1;
            if tried > members.len() * 4 {
                // Nearly every member is unusable: stop walking the ring.
                break;
            }
        }
        (0..members.len()).find(|&i| usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::members;

    fn owners(ring: &Ring, m: &[Member], usable: &dyn Fn(usize) -> bool) -> Vec<String> {
        (0..2000u32)
            .map(|k| {
                let i = ring
                    .pick(m, Some(hash_bytes(&k.to_le_bytes())), usable)
                    .unwrap();
                m[i].backend.addr.to_string()
            })
            .collect()
    }

    #[test]
    fn the_bucket_index_finds_what_a_full_binary_search_finds() {
        for weights in [vec![1], vec![1, 2, 3], vec![1; 100], vec![1; 1000]] {
            let m = members(&weights);
            let ring = Ring::new(&m);
            let mut keys: Vec<u64> = (0..5000u32).map(|k| hash_bytes(&k.to_le_bytes())).collect();
            // The edges: before the first point, after the last, on points.
            keys.extend([
                0,
                u64::MAX,
                ring.points[0].0,
                ring.points[ring.points.len() - 1].0,
            ]);
            keys.extend(ring.points.iter().step_by(97).map(|p| p.0));
            for key in keys {
                assert_eq!(
                    ring.first_at_or_after(key),
                    ring.points.partition_point(|&(p, _)| p < key),
                    "{} members, key {key:#x}",
                    weights.len()
                );
            }
        }
    }

    #[test]
    fn removing_one_moves_only_its_keys() {
        let four = members(&[1, 1, 1, 1]);
        let before = owners(&Ring::new(&four), &four, &|_| true);
        let three: Vec<Member> = four
            .iter()
            .filter(|m| &*m.backend.addr != "10.0.0.2:80")
            .cloned()
            .collect();
        let after = owners(&Ring::new(&three), &three, &|_| true);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != "10.0.0.2:80" {
                assert_eq!(b, a, "a key of a surviving backend moved");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 300 && moved < 700, "{moved}");
    }

    #[test]
    fn failing_one_moves_only_its_keys() {
        let m = members(&[1, 1, 1, 1]);
        let ring = Ring::new(&m);
        let before = owners(&ring, &m, &|_| true);
        let after = owners(&ring, &m, &|i| i != 1);
        for (b, a) in before.iter().zip(&after) {
            if b != "10.0.0.1:80" {
                assert_eq!(b, a);
            } else {
                assert_ne!(a, "10.0.0.1:80");
            }
        }
    }

    #[test]
    fn weights_shape_the_shares_and_rings_agree() {
        let m = members(&[3, 1]);
        let a = owners(&Ring::new(&m), &m, &|_| true);
        let b = owners(&Ring::new(&m), &m, &|_| true);
        assert_eq!(a, b);
        let share = a.iter().filter(|o| *o == "10.0.0.0:80").count() as f64 / a.len() as f64;
        assert!((share - 0.75).abs() < 0.07, "{share}");
    }

    // FNV-1a + murmur3 fmix64 of "10.0.0.1:80#0", computed independently.
    const PINNED: u64 = 15_674_823_557_361_593_811;

    #[test]
    fn hash_is_fixed() {
        // Pinned so that a change of hash (which would move every key on
        // every deployed instance) cannot slip in unnoticed.
        assert_eq!(hash_bytes(b"10.0.0.1:80#0"), PINNED);
    }
}
