//! Bounded keyed state: a hash index over a slab of slots, evicted by CLOCK
//! (second chance), an approximation of least-recently-used that costs one bit per key
//! and O(1) amortized per operation.
//!
//! Every detector keeps its per-key state (hosts, host pairs, destinations) in a
//! [`BoundedMap`] capped at `max_keys_per_detector`. When the map is full, inserting a
//! new key evicts one whose reference bit is clear (touched least recently, roughly),
//! and [`BoundedMap::evictions`] counts it. The slab never grows past the cap, so memory
//! is bounded by `cap × bytes_per_key()` plus the values' own heap parts.
//!
//! Iteration follows slab order, which depends only on the sequence of operations, so it
//! is deterministic; the hasher is a fixed-seed Fx-style hash for the same reason (and
//! because `SipHash` costs more than a detector can afford per record).

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hash, Hasher},
    mem::size_of,
};

/// A fast, fixed-seed, non-cryptographic hasher (the rustc "Fx" multiply-rotate step,
/// with a final avalanche so that hashbrown's top and bottom bits are both usable).
///
/// Not `DoS`-resistant; keys are bounded by the cap, so a hostile flood of keys costs
/// evictions, not memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        crate::detect::sketch::mix64(self.hash)
    }
}

/// `BuildHasher` for [`FxHasher`].
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// Starts loading the cache line holding `value` into the first-level cache and returns
/// at once: a hint, with no effect on what any later code reads.
///
/// Detectors look a few records ahead in a run ([`super::Detector::observe_batch`]) and
/// prefetch those records' state, so that its loads from the outer caches overlap with
/// the work on the current record instead of stalling it one record at a time.
#[inline(always)]
#[expect(
    clippy::inline_always,
    reason = "one instruction; a call would cost more"
)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and never changes memory; `value` is a live
    // reference anyway. SSE is part of the x86-64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(value).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// In this order (`repr(C)`): a lookup compares the key, sets the reference bit and then
/// reads the head of the value, so they share the slot's first cache line. The compiler's
/// own order puts a value with wider alignment first and the key after it, which can cost
/// a second line per lookup. Values keep their per-record fields first for the same
/// reason (exfiltration's pair and host state).
#[repr(C)]
struct Slot<K, V> {
    key: K,
    referenced: bool,
    value: V,
}

/// A map holding at most `cap` keys; see the module docs.
pub struct BoundedMap<K, V> {
    index: HashMap<K, u32, FxBuildHasher>,
    slots: Vec<Slot<K, V>>,
    hand: usize,
    cap: usize,
    evictions: u64,
}

impl<K: Hash + Eq + Copy, V> BoundedMap<K, V> {
    /// An empty map that will hold at most `cap` keys (at least 1).
    #[must_use]
    pub fn new(cap: usize) -> Self {
        let cap = cap.clamp(1, u32::MAX as usize);
        Self {
            index: HashMap::with_hasher(FxBuildHasher::default()),
            slots: Vec::new(),
            hand: 0,
            cap,
            evictions: 0,
        }
    }

    /// Keys held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The cap.
    #[must_use]
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Keys evicted because the map was full.
    #[must_use]
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The value of `key`, marking it recently used.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.index.get(key)? as usize;
        let slot = &mut self.slots[i];
        slot.referenced = true;
        Some(&mut slot.value)
    }

    /// [`Self::get_mut`] that also returns the key's slot number, for a [`SlotHints`]
    /// (valid until the next insertion or removal; [`Self::get_mut_in`] checks it).
    #[inline]
    pub fn get_mut_slot(&mut self, key: &K) -> Option<(u32, &mut V)> {
        let i = *self.index.get(key)?;
        let slot = &mut self.slots[i as usize];
        slot.referenced = true;
        Some((i, &mut slot.value))
    }

    /// The value of `key` if slot `slot` holds it, marking it recently used exactly as
    /// [`Self::get_mut`] would; `None` when the slot holds another key or none (a stale
    /// hint: the caller asks the index then). No hashing, one key comparison.
    #[inline]
    pub fn get_mut_in(&mut self, slot: u32, key: &K) -> Option<&mut V> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.key != *key {
            return None;
        }
        s.referenced = true;
        Some(&mut s.value)
    }

    /// Whether slot `slot` holds `key` (a [`SlotHints`] entry checked before use).
    #[inline]
    #[must_use]
    pub fn holds(&self, slot: u32, key: &K) -> bool {
        self.slots.get(slot as usize).is_some_and(|s| s.key == *key)
    }

    /// The value in slot `slot`, marking it recently used as [`Self::get_mut`] would.
    ///
    /// # Panics
    /// If there is no such slot: pass a number [`Self::holds`] confirmed or a lookup
    /// returned.
    #[inline]
    pub fn slot_mut(&mut self, slot: u32) -> &mut V {
        let s = &mut self.slots[slot as usize];
        s.referenced = true;
        &mut s.value
    }

    /// The value of `key`, without touching its recency.
    #[inline]
    #[must_use]
    pub fn get(&self, key: &K) -> Option<&V> {
        let i = *self.index.get(key)? as usize;
        Some(&self.slots[i].value)
    }

    /// The value of `key`, inserting `make()` first if absent (evicting one key if the
    /// map is full). A key found is marked recently used; a key inserted is not.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.get_or_insert_marked(key, make, false)
    }

    /// [`Self::get_or_insert_with`] that also returns the key's slot number, for a
    /// [`SlotHints`].
    #[inline]
    pub fn get_or_insert_slot(&mut self, key: K, make: impl FnOnce() -> V) -> (u32, &mut V) {
        if let Some(&i) = self.index.get(&key) {
            let slot = &mut self.slots[i as usize];
            slot.referenced = true;
            return (i, &mut slot.value);
        }
        let i = self.insert_new(key, make, false);
        (i, &mut self.slots[i as usize].value)
    }

    /// [`Self::get_or_insert_with`] that marks the key recently used whether it was
    /// found or inserted: the same reference bits as inserting and then calling
    /// [`Self::get_mut`], for one index lookup instead of two.
    #[inline]
    pub fn get_or_insert_touched(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.get_or_insert_marked(key, make, true)
    }

    /// [`Self::get_or_insert_touched`] that also returns the key's slot number, for a
    /// [`SlotHints`].
    #[inline]
    pub fn get_or_insert_touched_slot(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
    ) -> (u32, &mut V) {
        if let Some(&i) = self.index.get(&key) {
            let slot = &mut self.slots[i as usize];
            slot.referenced = true;
            return (i, &mut slot.value);
        }
        let i = self.insert_new(key, make, true);
        (i, &mut self.slots[i as usize].value)
    }

    /// Finds `key` (marking it) or inserts `make()` with the reference bit `mark`.
    #[inline]
    fn get_or_insert_marked(&mut self, key: K, make: impl FnOnce() -> V, mark: bool) -> &mut V {
        if let Some(&i) = self.index.get(&key) {
            let slot = &mut self.slots[i as usize];
            slot.referenced = true;
            return &mut slot.value;
        }
        let i = self.insert_new(key, make, mark);
        &mut self.slots[i as usize].value
    }

    /// Inserts `key`, known to be absent, with the value `make()` and the reference bit
    /// `mark` (evicting one key if the map is full). The value is made where it goes:
    /// moving a large one into an out-of-line call cost a `memcpy` per insertion, and
    /// inlined the whole pipeline ran fewer instructions than with this out of line.
    #[inline]
    fn insert_new(&mut self, key: K, make: impl FnOnce() -> V, mark: bool) -> u32 {
        let i = if self.slots.len() < self.cap {
            reserve_one(&mut self.slots, self.cap);
            self.slots.push(Slot {
                key,
                value: make(),
                referenced: mark,
            });
            self.slots.len() - 1
        } else {
            // The victim is chosen before the new slot exists, so `mark` cannot save or
            // doom any key in this call: only later evictions see it.
            let victim = clock_victim(&mut self.slots, &mut self.hand, |s| &mut s.referenced);
            let slot = &mut self.slots[victim];
            self.index.remove(&slot.key);
            *slot = Slot {
                key,
                value: make(),
                referenced: mark,
            };
            self.evictions += 1;
            victim
        };
        // Fits: cap is at most u32::MAX.
        #[expect(clippy::cast_possible_truncation, reason = "i < cap <= u32::MAX")]
        let i = i as u32;
        self.index.insert(key, i);
        i
    }

    /// Starts loading slot `slot` (a number from [`Self::get_mut_slot`] or a
    /// [`SlotHints`] entry; one out of range is ignored). See [`prefetch`].
    #[inline]
    pub fn prefetch_slot(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            prefetch(s);
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.index.remove(key)? as usize;
        let slot = self.slots.swap_remove(i);
        if i < self.slots.len() {
            let moved = self.slots[i].key;
            #[expect(clippy::cast_possible_truncation, reason = "i < cap <= u32::MAX")]
            self.index.insert(moved, i as u32);
        }
        Some(slot.value)
    }

    /// Keeps only the keys for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut i = 0;
        while i < self.slots.len() {
            let slot = &mut self.slots[i];
            if keep(&slot.key, &mut slot.value) {
                i += 1;
            } else {
                let key = slot.key;
                self.index.remove(&key);
                self.slots.swap_remove(i);
                if i < self.slots.len() {
                    let moved = self.slots[i].key;
                    #[expect(clippy::cast_possible_truncation, reason = "i < cap <= u32::MAX")]
                    self.index.insert(moved, i as u32);
                }
            }
        }
        if self.hand > self.slots.len() {
            self.hand = 0;
        }
    }

    /// Removes everything (the eviction count stays).
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
    }

    /// All entries, in slab order (deterministic for a given sequence of operations).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().map(|s| (&s.key, &s.value))
    }

    /// All entries, mutably, in slab order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.slots.iter_mut().map(|s| (&s.key, &mut s.value))
    }

    /// Approximate bytes per key held, excluding the value's own heap parts: one slab
    /// slot plus one hash-index entry (key, u32 slot number, one control byte) at
    /// hashbrown's 7/8 load factor.
    #[must_use]
    pub fn bytes_per_key() -> usize {
        size_of::<Slot<K, V>>() + (size_of::<(K, u32)>() + 1) * 8 / 7
    }

    /// Bytes allocated by the map itself (slab and index capacity), excluding the
    /// values' heap parts.
    #[must_use]
    pub fn shallow_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot<K, V>>()
            + self.index.capacity() * (size_of::<(K, u32)>() + 1) * 8 / 7
    }

    /// [`Self::get_mut_in`] with the comparison made by `is_key` (true for the key
    /// sought): for a key held in parts, such as two addresses borrowed from a record,
    /// that would otherwise be copied into one value just to be compared.
    #[inline]
    pub fn get_mut_in_by(&mut self, slot: u32, is_key: impl FnOnce(&K) -> bool) -> Option<&mut V> {
        let s = self.slots.get_mut(slot as usize)?;
        if !is_key(&s.key) {
            return None;
        }
        s.referenced = true;
        Some(&mut s.value)
    }

    /// The key and value in slot `slot` (a number from [`Self::get_mut_slot`] or a
    /// [`SlotHints`] entry; `None` out of range), without touching recency: for
    /// prefetching the parts of a large value a record will touch, beyond the first line
    /// that [`Self::prefetch_slot`] loads.
    #[inline]
    #[must_use]
    pub fn peek_slot(&self, slot: u32) -> Option<(&K, &V)> {
        let s = self.slots.get(slot as usize)?;
        Some((&s.key, &s.value))
    }
}

/// CLOCK, for a slab of slots with reference bits (the [`BoundedMap`]'s, and any table
/// that keeps its slots the same way): advances `hand` past referenced slots, clearing
/// their bit, to the first unreferenced one, and returns it (the hand moves past it).
/// `slots` must not be empty.
pub(crate) fn clock_victim<S>(
    slots: &mut [S],
    hand: &mut usize,
    referenced: impl Fn(&mut S) -> &mut bool,
) -> usize {
    loop {
        if *hand >= slots.len() {
            *hand = 0;
        }
        let bit = referenced(&mut slots[*hand]);
        let victim = *hand;
        *hand += 1;
        if *bit {
            *bit = false;
        } else {
            return victim;
        }
    }
}

/// Makes room for one more slot in a slab capped at `cap` slots: geometric growth, but
/// never past the cap, so a full slab holds exactly `cap`.
pub(crate) fn reserve_one<S>(slots: &mut Vec<S>, cap: usize) {
    if slots.len() == slots.capacity() {
        let want = (slots.len() * 2).max(16).min(cap) - slots.len();
        slots.reserve_exact(want);
    }
}

/// A fixed-size, direct-mapped table from a key's hash to the [`BoundedMap`] slot it
/// was last found in: a hit ([`BoundedMap::get_mut_in`]) costs one load and one key
/// comparison instead of hashing the key and probing the index. A hint is never trusted:
/// a slot that moved (removal, eviction) or a bucket shared with another key fails the
/// key comparison and the caller asks the index, so the hints need no upkeep and never
/// change what the map holds or its reference bits.
#[derive(Debug)]
pub struct SlotHints {
    /// Slot number + 1 per bucket; 0: none.
    buckets: Box<[u32]>,
}

impl SlotHints {
    /// A table of `2^bits` buckets (4 bytes each).
    #[must_use]
    pub fn new(bits: u32) -> Self {
        Self {
            buckets: vec![0; 1 << bits].into_boxed_slice(),
        }
    }

    #[inline]
    fn bucket(&self, hash: u64) -> usize {
        (hash >> 40) as usize & (self.buckets.len() - 1)
    }

    /// The slot last noted for a key with `hash`, if any.
    #[inline]
    #[must_use]
    pub fn get(&self, hash: u64) -> Option<u32> {
        self.buckets[self.bucket(hash)].checked_sub(1)
    }

    /// Starts loading the bucket of `hash`. See [`prefetch`].
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        prefetch(&self.buckets[self.bucket(hash)]);
    }

    /// Notes that the key with `hash` is in slot `slot`.
    #[inline]
    pub fn set(&mut self, hash: u64, slot: u32) {
        let b = self.bucket(hash);
        self.buckets[b] = slot.saturating_add(1);
    }

    /// Bytes held.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.buckets.len() * size_of::<u32>()
    }
}

/// Per-key state kept exactly as [`BoundedMap`] keeps it (the same slab, the same slots
/// in the same order, the same reference bits, CLOCK victims and eviction counts), but
/// with an index of its own that the caller looks up by a 64-bit hash it computed once
/// per record (and may have used for a filter before), and can prefetch: beacon's
/// [`super::Detector::observe_batch`] starts loading the index buckets of a run's admitted
/// records, then the slots they name, before it records any of them. Once the tables
/// outgrow the caches, those loads are most of a record's cost, and the map's `HashMap`
/// index can only be waited on.
///
/// The index is open-addressed and linear-probed, at most half full, with backward-shift
/// deletion (no tombstones). A bucket is 8 bytes: the upper half of the key's hash (which
/// also picks the home bucket) and the slot; the key itself is compared in the slot. That
/// is 16 to 32 bytes of index per key, against the whole key plus a slot number per
/// bucket in the map's index (about 50 bytes for beacon's series keys and exfil's
/// stitched connections). A lookup of an absent key usually ends at the first empty
/// bucket without loading any slot; one of a held key loads its bucket and its slot.
pub(crate) struct Table<K, V> {
    index: Box<[Bucket]>,
    slots: Vec<TableSlot<K, V>>,
    hand: usize,
    cap: usize,
    evictions: u64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// [`tag`] of the key's hash.
    tag: u32,
    /// The key's slot, or [`NO_SLOT`] for an empty bucket.
    slot: u32,
}

/// The slot number of an empty bucket (never a slot: the cap is below it).
pub(crate) const NO_SLOT: u32 = u32::MAX;

const EMPTY_BUCKET: Bucket = Bucket {
    tag: 0,
    slot: NO_SLOT,
};

/// The smallest index: 1,024 buckets, 8 KiB.
const MIN_INDEX: usize = 1 << 10;

/// Key first, then the value's head, as [`Slot`].
#[repr(C)]
struct TableSlot<K, V> {
    key: K,
    /// [`tag`] of the key's hash, to find the key's bucket when the slot moves.
    tag: u32,
    referenced: bool,
    value: V,
}

/// What a [`Table`] keeps of a key's 64-bit hash.
#[inline]
pub(crate) fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl<K: Eq + Copy, V> Table<K, V> {
    /// An empty table that will hold at most `cap` keys (at least 1), as
    /// [`BoundedMap::new`].
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            index: vec![EMPTY_BUCKET; MIN_INDEX].into_boxed_slice(),
            slots: Vec::new(),
            hand: 0,
            cap: cap.clamp(1, NO_SLOT as usize),
            evictions: 0,
        }
    }

    /// Keys held.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Keys evicted because the table was full.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & (self.index.len() - 1)
    }

    /// Starts loading the home bucket of `hash` (see [`prefetch`]).
    #[inline]
    pub(crate) fn prefetch_index(&self, hash: u64) {
        prefetch(&self.index[self.home(tag(hash))]);
    }

    /// The slot of the first bucket from the home of `hash` with its tag: where the key
    /// most likely is, found without loading any slot (to prefetch it). `None`: no bucket
    /// has the tag, so no key with this hash is held.
    #[inline]
    pub(crate) fn guess(&self, hash: u64) -> Option<u32> {
        self.probe(hash, |_| true)
    }

    /// Starts loading slot `slot` (one out of range is ignored).
    #[inline]
    pub(crate) fn prefetch_slot(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            prefetch(s);
        }
    }

    /// The slot holding `key` (whose hash is `hash`).
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &K) -> Option<u32> {
        self.probe(hash, |slot| self.slots[slot as usize].key == *key)
    }

    /// The slot of the first bucket from the home of `hash` whose tag is the hash's and
    /// whose slot `accept` takes; `None` at the first empty bucket.
    #[inline]
    fn probe(&self, hash: u64, accept: impl Fn(u32) -> bool) -> Option<u32> {
        let tag = tag(hash);
        let mask = self.index.len() - 1;
        let mut i = self.home(tag);
        loop {
            let b = self.index[i];
            if b.slot == NO_SLOT {
                return None;
            }
            if b.tag == tag && accept(b.slot) {
                return Some(b.slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// The value in `slot` (from [`Self::find`] or [`Self::insert`]), marked recently
    /// used: [`BoundedMap::get_mut`] of its key.
    #[inline]
    pub(crate) fn touch(&mut self, slot: u32) -> &mut V {
        let s = &mut self.slots[slot as usize];
        s.referenced = true;
        &mut s.value
    }

    /// The value in `slot`, if any, without touching its recency (for prefetching what it
    /// points to).
    #[inline]
    pub(crate) fn peek(&self, slot: u32) -> Option<&V> {
        self.slots.get(slot as usize).map(|s| &s.value)
    }

    /// [`BoundedMap::get_mut_in`]: the value of `key` if slot `slot` holds it, marked
    /// recently used.
    #[inline]
    pub(crate) fn get_mut_in(&mut self, slot: u32, key: &K) -> Option<&mut V> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.key != *key {
            return None;
        }
        s.referenced = true;
        Some(&mut s.value)
    }

    /// [`BoundedMap::get`]: the value of `key`, without touching its recency.
    pub(crate) fn get(&self, hash: u64, key: &K) -> Option<&V> {
        let slot = self.find(hash, key)?;
        Some(&self.slots[slot as usize].value)
    }

    /// Inserts `key` (hash `hash`), known to be absent, with `value` and the reference
    /// bit `mark`, evicting a key if the table is full: [`BoundedMap`]'s insertion, slot
    /// for slot. Returns the key's slot.
    pub(crate) fn insert(&mut self, hash: u64, key: K, value: V, mark: bool) -> u32 {
        let tag = tag(hash);
        let slot = TableSlot {
            key,
            value,
            tag,
            referenced: mark,
        };
        let i = if self.slots.len() < self.cap {
            if (self.slots.len() + 1) * 2 > self.index.len() {
                self.grow_index();
            }
            reserve_one(&mut self.slots, self.cap);
            self.slots.push(slot);
            self.slots.len() - 1
        } else {
            // CLOCK, as the map.
            let victim = clock_victim(&mut self.slots, &mut self.hand, |s| &mut s.referenced);
            #[expect(clippy::cast_possible_truncation, reason = "victim < cap < 2^32")]
            self.unindex(self.slots[victim].tag, victim as u32);
            self.slots[victim] = slot;
            self.evictions += 1;
            victim
        };
        #[expect(clippy::cast_possible_truncation, reason = "i < cap < 2^32")]
        let i = i as u32;
        self.index_insert(tag, i);
        i
    }

    /// [`BoundedMap::remove`]: removes `key` (hash `hash`), moving the last slot into its
    /// place, and returns its value.
    pub(crate) fn remove(&mut self, hash: u64, key: &K) -> Option<V> {
        let i = self.find(hash, key)?;
        self.unindex(tag(hash), i);
        let slot = self.slots.swap_remove(i as usize);
        if (i as usize) < self.slots.len() {
            let moved = self.slots[i as usize].tag;
            #[expect(clippy::cast_possible_truncation, reason = "len < cap < 2^32")]
            let from = self.slots.len() as u32;
            self.reindex(moved, from, i);
        }
        Some(slot.value)
    }

    /// [`BoundedMap::retain`]: keeps only the keys for which `keep` returns true (the
    /// same sweep, so the same slots end where they do in the map).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut i = 0;
        let mut removed = false;
        while i < self.slots.len() {
            let slot = &mut self.slots[i];
            if keep(&slot.key, &mut slot.value) {
                i += 1;
            } else {
                self.slots.swap_remove(i);
                removed = true;
            }
        }
        if self.hand > self.slots.len() {
            self.hand = 0;
        }
        if removed {
            self.rebuild_index(self.index.len());
        }
    }

    /// Removes everything (the eviction count stays).
    pub(crate) fn clear(&mut self) {
        self.index.fill(EMPTY_BUCKET);
        self.slots.clear();
        self.hand = 0;
    }

    /// All entries, in slab order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().map(|s| (&s.key, &s.value))
    }

    /// All entries, mutably, in slab order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.slots.iter_mut().map(|s| (&s.key, &mut s.value))
    }

    /// Bytes allocated by the table itself (slab and index), excluding the values' heap
    /// parts.
    pub(crate) fn shallow_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<TableSlot<K, V>>()
            + self.index.len() * size_of::<Bucket>()
    }

    /// Puts `(tag, slot)` in the first empty bucket from its home.
    #[inline]
    fn index_insert(&mut self, tag: u32, slot: u32) {
        let mask = self.index.len() - 1;
        let mut i = self.home(tag);
        while self.index[i].slot != NO_SLOT {
            i = (i + 1) & mask;
        }
        self.index[i] = Bucket { tag, slot };
    }

    /// The bucket of slot `slot`, whose key's tag is `tag`.
    fn bucket_of(&self, tag: u32, slot: u32) -> usize {
        let mask = self.index.len() - 1;
        let mut i = self.home(tag);
        while self.index[i].slot != slot {
            i = (i + 1) & mask;
        }
        i
    }

    /// Points the bucket of slot `from` (tag `tag`) at slot `to`.
    fn reindex(&mut self, tag: u32, from: u32, to: u32) {
        let i = self.bucket_of(tag, from);
        self.index[i].slot = to;
    }

    /// Removes the bucket of slot `slot` (tag `tag`), shifting back the buckets after it
    /// that may move closer to their home, so that every key stays reachable from its home
    /// without crossing an empty bucket.
    fn unindex(&mut self, tag: u32, slot: u32) {
        let mask = self.index.len() - 1;
        let mut hole = self.bucket_of(tag, slot);
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let b = self.index[j];
            if b.slot == NO_SLOT {
                break;
            }
            // `b` may fill the hole unless its home lies cyclically in (hole, j].
            let b_home = self.home(b.tag);
            if (j.wrapping_sub(b_home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.index[hole] = b;
                hole = j;
            }
        }
        self.index[hole] = EMPTY_BUCKET;
    }

    /// Doubles the index.
    fn grow_index(&mut self) {
        self.rebuild_index(self.index.len() * 2);
    }

    /// An index of `size` buckets (a power of two) over the slots held.
    fn rebuild_index(&mut self, size: usize) {
        self.index = vec![EMPTY_BUCKET; size].into_boxed_slice();
        for i in 0..self.slots.len() {
            #[expect(clippy::cast_possible_truncation, reason = "i < cap < 2^32")]
            self.index_insert(self.slots[i].tag, i as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift64 stream from `seed`: the operations of the op-by-op tests below.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Every slot's key, value and reference bit, in slab order.
    fn slab(m: &BoundedMap<u32, u32>) -> Vec<(u32, u32, bool)> {
        m.slots
            .iter()
            .map(|s| (s.key, s.value, s.referenced))
            .collect()
    }

    #[test]
    fn holds_at_most_cap_and_counts_evictions() {
        let mut m: BoundedMap<u64, u64> = BoundedMap::new(100);
        for k in 0..1000u64 {
            *m.get_or_insert_with(k, || 0) += 1;
        }
        assert_eq!(m.len(), 100);
        assert_eq!(m.evictions(), 900);
        assert!(m.shallow_bytes() < 100 * BoundedMap::<u64, u64>::bytes_per_key() * 3);
    }

    #[test]
    fn recently_used_keys_survive_eviction() {
        let mut m: BoundedMap<u64, ()> = BoundedMap::new(10);
        for k in 0..10 {
            m.get_or_insert_with(k, || ());
        }
        for round in 0..50u64 {
            // Key 0 is touched before every insertion; it must never be the victim.
            assert!(m.get_mut(&0).is_some(), "key 0 evicted in round {round}");
            m.get_or_insert_with(100 + round, || ());
        }
    }

    #[test]
    fn touched_insert_matches_insert_then_get_mut() {
        // The old two-step admission (insert, then look the key up again to mark it)
        // and the one-step call must leave the same slab, reference bits, hand and
        // evictions after every operation.
        let mut two: BoundedMap<u32, u32> = BoundedMap::new(37);
        let mut one: BoundedMap<u32, u32> = BoundedMap::new(37);
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for step in 0..20_000u32 {
            let x = next();
            let key = (x % 97) as u32;
            match (x >> 32) % 4 {
                0 => {
                    two.get_or_insert_with(key, || step);
                    two.get_mut(&key);
                    one.get_or_insert_touched(key, || step);
                }
                1 => {
                    two.get_or_insert_with(key, || step);
                    one.get_or_insert_with(key, || step);
                }
                2 => {
                    two.get_mut(&key);
                    one.get_mut(&key);
                }
                _ => {
                    two.remove(&key);
                    one.remove(&key);
                }
            }
            assert_eq!(slab(&two), slab(&one), "step {step}");
            assert_eq!((two.hand, two.evictions), (one.hand, one.evictions));
        }
        assert!(one.evictions() > 1000);
    }

    #[test]
    fn slot_hints_find_the_same_values_and_bits_as_lookups() {
        // Lookups through (often stale, often shared) hints and plain lookups must leave
        // the same slab, reference bits, hand and evictions.
        let mut plain: BoundedMap<u32, u32> = BoundedMap::new(37);
        let mut hinted: BoundedMap<u32, u32> = BoundedMap::new(37);
        let mut hints = SlotHints::new(4);
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for step in 0..20_000u32 {
            let x = next();
            let key = (x % 97) as u32;
            let hash = crate::detect::sketch::mix64(u64::from(key));
            match (x >> 32) % 4 {
                0 => {
                    let a = plain.get_mut(&key).map(|v| *v);
                    let b = match hints.get(hash).and_then(|i| hinted.get_mut_in(i, &key)) {
                        Some(v) => Some(*v),
                        None => hinted.get_mut_slot(&key).map(|(i, v)| {
                            hints.set(hash, i);
                            *v
                        }),
                    };
                    assert_eq!(a, b, "step {step}");
                }
                1 => {
                    let a = *plain.get_or_insert_with(key, || step);
                    let b = match hints.get(hash).and_then(|i| hinted.get_mut_in(i, &key)) {
                        Some(v) => *v,
                        None => {
                            let (i, v) = hinted.get_or_insert_slot(key, || step);
                            let v = *v;
                            hints.set(hash, i);
                            v
                        }
                    };
                    assert_eq!(a, b, "step {step}");
                }
                2 => {
                    plain.get_or_insert_touched(key, || step);
                    hinted.get_or_insert_touched(key, || step);
                }
                _ => {
                    plain.remove(&key);
                    hinted.remove(&key);
                }
            }
            assert_eq!(slab(&plain), slab(&hinted), "step {step}");
            assert_eq!(
                (plain.hand, plain.evictions),
                (hinted.hand, hinted.evictions)
            );
        }
    }

    #[test]
    fn remove_and_retain_keep_the_index_consistent() {
        let mut m: BoundedMap<u32, u32> = BoundedMap::new(1000);
        for k in 0..500 {
            m.get_or_insert_with(k, || k * 2);
        }
        assert_eq!(m.remove(&7), Some(14));
        m.retain(|k, _| k % 3 != 0);
        for k in 0..500 {
            let expect = (k % 3 != 0 && k != 7).then_some(k * 2);
            assert_eq!(m.get(&k).copied(), expect, "key {k}");
        }
    }

    #[test]
    fn get_mut_in_by_matches_get_mut_in() {
        // The same answers and reference bits as the comparison with a whole key, for
        // slots that hold the key, another key or none.
        let mut whole: BoundedMap<(u32, u32), u32> = BoundedMap::new(37);
        let mut parts: BoundedMap<(u32, u32), u32> = BoundedMap::new(37);
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for step in 0..20_000u32 {
            let x = next();
            let key = ((x % 7) as u32, ((x >> 8) % 13) as u32);
            let slot = ((x >> 16) % 40) as u32;
            if (x >> 32).is_multiple_of(2) {
                whole.get_or_insert_with(key, || step);
                parts.get_or_insert_with(key, || step);
            } else {
                let by_key = whole.get_mut_in(slot, &key).map(|v| *v);
                let by_parts = parts
                    .get_mut_in_by(slot, |k| k.0 == key.0 && k.1 == key.1)
                    .map(|v| *v);
                assert_eq!(by_key, by_parts, "step {step}");
            }
            let bits = |m: &BoundedMap<(u32, u32), u32>| {
                m.slots
                    .iter()
                    .map(|s| (s.key, s.value, s.referenced))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&whole), bits(&parts), "step {step}");
        }
    }

    /// A [`Table`] and a [`BoundedMap`] given the same operations hold the same entries in
    /// the same slab order and count the same evictions after every one of them (which
    /// also needs the same reference bits and hand: they pick the victims), with a good
    /// hash and with one that gives many keys the same tag and home.
    #[test]
    fn table_keeps_what_the_bounded_map_keeps() {
        for weak in [false, true] {
            let hash = |k: u32| {
                if weak {
                    u64::from(k % 7) << 32
                } else {
                    crate::detect::sketch::mix64(u64::from(k))
                }
            };
            let mut map: BoundedMap<u32, u32> = BoundedMap::new(37);
            let mut table: Table<u32, u32> = Table::new(37);
            let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
            for step in 0..30_000u32 {
                let x = next();
                let key = (x % 97) as u32;
                let h = hash(key);
                match (x >> 32) % 16 {
                    0..=4 => {
                        let a = *map.get_or_insert_with(key, || step);
                        let b = if let Some(slot) = table.find(h, &key) {
                            *table.touch(slot)
                        } else {
                            table.insert(h, key, step, false);
                            step
                        };
                        assert_eq!(a, b, "step {step}");
                    }
                    5..=7 => {
                        let a = *map.get_or_insert_touched(key, || step);
                        let b = if let Some(slot) = table.find(h, &key) {
                            *table.touch(slot)
                        } else {
                            let slot = table.insert(h, key, step, true);
                            *table.touch(slot)
                        };
                        assert_eq!(a, b, "step {step}");
                    }
                    8..=10 => {
                        let a = map.get_mut(&key).map(|v| *v);
                        let b = table.find(h, &key).map(|slot| *table.touch(slot));
                        assert_eq!(a, b, "step {step}");
                    }
                    11 => assert_eq!(map.get(&key), table.get(h, &key), "step {step}"),
                    12..=14 => assert_eq!(map.remove(&key), table.remove(h, &key), "step {step}"),
                    _ => {
                        let m = u32::try_from((x >> 40) % 5 + 2).expect("small");
                        map.retain(|k, v| (k + *v) % m != 0);
                        table.retain(|k, v| (k + *v) % m != 0);
                    }
                }
                let held =
                    |v: Vec<(&u32, &u32)>| v.into_iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>();
                assert_eq!(
                    held(map.iter().collect()),
                    held(table.iter().collect()),
                    "step {step}"
                );
                assert_eq!(map.evictions(), table.evictions(), "step {step}");
                // Every key held is found where it is.
                for (i, (k, _)) in (0u32..).zip(table.iter()) {
                    assert_eq!(table.find(hash(*k), k), Some(i), "step {step}");
                }
            }
            assert!(table.evictions() > 1000);
        }
    }
}
