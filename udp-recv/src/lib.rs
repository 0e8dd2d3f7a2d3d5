//! Receive buffers that hand datagrams to quinn-proto without copying them.
//!
//! quinn-proto takes each datagram as a `BytesMut`, decrypts it in place and hands stream data to
//! the application as `Bytes` slices of that same buffer. Receiving straight into one `BytesMut`
//! per batch slot and splitting the datagram off it avoids the copy quinn makes per datagram.
//! A slot whose earlier datagrams were all dropped (read by the application, or acknowledgements
//! processed at once) gets its allocation back without allocating or zeroing. A slot still
//! referenced is parked and swapped for the oldest parked allocation that became free again
//! (the application reads in order, so the oldest frees first), or else for a fresh zeroed one;
//! memory follows the data still unread, plus at most `MAX_PARKED` slots kept for reuse. When
//! more slots are held than that, the newest are let go rather than the oldest: theirs would be
//! the last allocations to come free.
//!
//! Two receive loops use it: the node's own QUIC driver on monoio, and the gateway's quinn,
//! patched for it (`patches/quinn`, see its `SIXFOLD-PATCH.md`), where the copy of every
//! received batch was the gateway's largest memmove.
//!
//! Small receives are copied instead: a 100-byte datagram must not pin a 64 KiB slot while its
//! stream data waits to be read (quinn-proto accounts for the datagram's size, not the slot's).
//! A slot is split without copying only when the receive fills at least a quarter of it, so
//! memory held is at most four times the data held.

use std::collections::VecDeque;
use std::io::IoSliceMut;

use bytes::BytesMut;
use quinn_udp::{BATCH_SIZE, RecvMeta};

/// The largest coalesced (GRO) receive the kernel produces: a slot holds this, or one datagram
/// of the MTU if that is larger.
pub const GRO_RECEIVE_MAX: usize = 64 * 1024;

/// Parked slot allocations kept for reuse (64 KiB each, so 32 MiB): more than one download's
/// two part windows of the default 8 MiB hold. With 64, a gateway's download held more slots
/// than were kept, so nearly every refill zeroed a fresh one (`memset` was 3 % of the gateway's
/// download samples, docs/bench.md).
const MAX_PARKED: usize = 512;
/// Parked slots probed for reuse per refill.
const PARKED_PROBES: usize = 2;

/// One receive slot: a buffer of `len` bytes that the kernel fills with one (GRO: several)
/// datagrams.
struct Slot {
    buf: BytesMut,
    /// Every byte of the allocation behind `buf` has been initialised (see [`Slot::fresh`]), so
    /// reclaiming that same allocation yields initialised memory.
    whole_allocation_initialised: bool,
}

impl Slot {
    fn fresh(len: usize) -> Self {
        let buf = BytesMut::zeroed(len);
        // `zeroed` initialises `len` bytes; if the allocator handed back more capacity, the tail
        // is uninitialised and this slot must zero again on every refill.
        let whole_allocation_initialised = buf.capacity() == len;
        Self {
            buf,
            whole_allocation_initialised,
        }
    }

    /// Makes the slot a full `len`-byte buffer again in its own allocation, if nothing else
    /// references that allocation any more.
    fn reclaim(&mut self, len: usize) -> bool {
        self.buf.clear();
        if self.whole_allocation_initialised && self.buf.try_reclaim(len) {
            // SAFETY: `try_reclaim` never allocates: on success `buf` views the allocation made
            // by `Slot::fresh`, whose capacity is exactly `len` and whose every byte was zeroed
            // then and only overwritten with initialised bytes since (kernel receives and
            // quinn-proto's in-place decryption). So the first `len` bytes are initialised and
            // within capacity.
            unsafe { self.buf.set_len(len) };
            true
        } else {
            false
        }
    }
}

/// A batch of receive slots for `recvmmsg`.
pub struct RecvBuffers {
    slots: Box<[Slot; BATCH_SIZE]>,
    metas: [RecvMeta; BATCH_SIZE],
    /// Slots whose datagrams are still referenced, oldest first.
    parked: VecDeque<Slot>,
    slot_len: usize,
    received: usize,
}

impl RecvBuffers {
    /// `slot_len` must hold the largest coalesced (GRO) receive: 64 KiB, or the MTU if larger.
    pub fn new(slot_len: usize) -> Self {
        Self {
            slots: Box::new(std::array::from_fn(|_| Slot::fresh(slot_len))),
            metas: [RecvMeta::default(); BATCH_SIZE],
            parked: VecDeque::new(),
            slot_len,
            received: 0,
        }
    }

    /// Receives one batch with `recv` (a `recvmmsg` wrapper); returns how many slots were filled.
    /// `E` lets a poll-based caller say "nothing yet" as well as report an I/O error.
    pub fn receive<E>(
        &mut self,
        recv: impl FnOnce(&mut [IoSliceMut<'_>], &mut [RecvMeta]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        // Datagrams of an earlier batch not taken by then are gone with the refill.
        self.received = 0;
        for index in 0..BATCH_SIZE {
            self.refill(index);
        }
        let mut iovs = self
            .slots
            .each_mut()
            .map(|slot| IoSliceMut::new(&mut slot.buf[..]));
        let received = recv(&mut iovs, &mut self.metas)?;
        self.received = received.min(BATCH_SIZE);
        Ok(self.received)
    }

    /// Makes slot `index` a full, unreferenced buffer again.
    fn refill(&mut self, index: usize) {
        let len = self.slot_len;
        if self.slots[index].buf.len() == len || self.slots[index].reclaim(len) {
            return;
        }
        let replacement = self.take_parked().unwrap_or_else(|| Slot::fresh(len));
        let held = std::mem::replace(&mut self.slots[index], replacement);
        if self.parked.len() < MAX_PARKED {
            self.parked.push_back(held);
        }
    }

    fn take_parked(&mut self) -> Option<Slot> {
        for _ in 0..PARKED_PROBES.min(self.parked.len()) {
            let mut slot = self.parked.pop_front()?;
            if slot.reclaim(self.slot_len) {
                return Some(slot);
            }
            self.parked.push_back(slot);
        }
        None
    }

    /// The datagrams of the last batch: metadata and each datagram split off its slot.
    /// GRO slots holding several datagrams (`stride` < `len`) yield one item per datagram.
    pub fn datagrams(&mut self) -> impl Iterator<Item = (RecvMeta, BytesMut)> + '_ {
        let received = std::mem::take(&mut self.received);
        let copy_below = self.slot_len / 4;
        self.slots
            .iter_mut()
            .zip(self.metas.iter())
            .take(received)
            .flat_map(move |(slot, meta)| {
                let meta = *meta;
                let len = meta.len.min(slot.buf.len());
                let stride = if meta.stride == 0 { len } else { meta.stride };
                let copy = len < copy_below;
                let mut taken = 0;
                std::iter::from_fn(move || {
                    if taken >= len {
                        return None;
                    }
                    let size = stride.min(len - taken);
                    let datagram = if copy {
                        BytesMut::from(&slot.buf[taken..taken + size])
                    } else {
                        slot.buf.split_to(size)
                    };
                    taken += size;
                    Some((meta, datagram))
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn fake_recv(
        payloads: &[&[u8]],
        stride: usize,
    ) -> impl FnOnce(&mut [IoSliceMut<'_>], &mut [RecvMeta]) -> Result<usize, ()> {
        move |bufs, metas| {
            for (i, p) in payloads.iter().enumerate() {
                bufs[i][..p.len()].copy_from_slice(p);
                metas[i] = RecvMeta {
                    addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
                    len: p.len(),
                    stride: if stride == 0 { p.len() } else { stride },
                    ecn: None,
                    dst_ip: None,
                };
            }
            Ok(payloads.len())
        }
    }

    #[test]
    fn splits_large_receives_and_gro_segments_without_copying() {
        let mut bufs = RecvBuffers::new(64);
        let first = [1u8; 20];
        let second = [2u8; 30];
        let payloads: [&[u8]; 2] = [&first, &second];
        assert_eq!(bufs.receive(fake_recv(&payloads, 0)).unwrap(), 2);
        let slot0 = bufs.slots[0].buf.as_ptr() as usize;
        let got: Vec<_> = bufs.datagrams().collect();
        assert_eq!(
            got[0].1.as_ptr() as usize,
            slot0,
            "split off the slot, not copied"
        );
        let got: Vec<_> = got.into_iter().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, vec![first.to_vec(), second.to_vec()]);

        // A GRO slot: three datagrams of stride 8, the last shorter.
        let gro: Vec<u8> = (0..20).collect();
        let payloads: [&[u8]; 1] = [&gro];
        assert_eq!(bufs.receive(fake_recv(&payloads, 8)).unwrap(), 1);
        let got: Vec<_> = bufs.datagrams().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(
            got,
            vec![gro[..8].to_vec(), gro[8..16].to_vec(), gro[16..].to_vec()]
        );
    }

    #[test]
    fn a_receive_that_finds_nothing_yields_no_datagrams_and_keeps_the_slots() {
        let mut bufs = RecvBuffers::new(64);
        let payloads: [&[u8]; 1] = [&[7u8; 40]];
        bufs.receive(fake_recv(&payloads, 0)).unwrap();
        let held: Vec<BytesMut> = bufs.datagrams().map(|(_, b)| b).collect();
        // A batch nobody took, then a poll-based caller's "not ready yet" (`Poll::Pending`).
        bufs.receive(fake_recv(&payloads, 0)).unwrap();
        let nothing: Result<usize, Option<()>> = bufs.receive(|_, _| Err(None));
        assert_eq!(nothing, Err(None));
        assert_eq!(bufs.datagrams().count(), 0);
        assert_eq!(&held[0][..], &[7u8; 40][..]);
        assert!(bufs.slots.iter().all(|slot| slot.buf.len() == 64));
    }

    #[test]
    fn small_receives_are_copied_and_leave_the_slot_whole() {
        let mut bufs = RecvBuffers::new(64);
        let payloads: [&[u8]; 1] = [b"ack"];
        bufs.receive(fake_recv(&payloads, 0)).unwrap();
        let slot0 = bufs.slots[0].buf.as_ptr() as usize;
        let got: Vec<_> = bufs.datagrams().map(|(_, b)| b).collect();
        assert_eq!(&got[0][..], b"ack");
        assert_ne!(got[0].as_ptr() as usize, slot0);
        assert_eq!(bufs.slots[0].buf.len(), 64);
        assert_eq!(bufs.slots[0].buf.as_ptr() as usize, slot0);
    }

    #[test]
    fn keeps_the_oldest_held_slots_when_more_are_held_than_it_keeps() {
        let mut bufs = RecvBuffers::new(64);
        let payload = [5u8; 40];
        let payloads: [&[u8]; 1] = [&payload];
        let mut held = Vec::new();
        for _ in 0..MAX_PARKED + 10 {
            bufs.receive(fake_recv(&payloads, 0)).unwrap();
            held.extend(bufs.datagrams().map(|(_, b)| b));
        }
        // One more refill parks the slot of the last datagram, if there is room.
        bufs.receive(|_, _| Ok::<usize, ()>(0)).unwrap();
        assert_eq!(bufs.parked.len(), MAX_PARKED);
        let allocation = |b: &BytesMut| b.as_ptr() as usize;
        let oldest: std::collections::BTreeSet<usize> =
            held[..MAX_PARKED].iter().map(allocation).collect();
        // A parked slot's buffer starts where its datagram, split off the front, ends.
        let parked: std::collections::BTreeSet<usize> = bufs
            .parked
            .iter()
            .map(|slot| allocation(&slot.buf) - payload.len())
            .collect();
        assert_eq!(parked, oldest);

        // Once released, every kept allocation is used again before any fresh one.
        drop(held);
        let mut reused = std::collections::BTreeSet::new();
        for _ in 0..MAX_PARKED {
            bufs.receive(fake_recv(&payloads, 0)).unwrap();
            // Held over the next refill, so slot 0 needs a replacement each time.
            let datagram: Vec<BytesMut> = bufs.datagrams().map(|(_, b)| b).collect();
            bufs.receive(|_, _| Ok::<usize, ()>(0)).unwrap();
            reused.insert(allocation(&bufs.slots[0].buf));
            drop(datagram);
        }
        assert_eq!(reused.len(), MAX_PARKED);
        assert!(reused.is_subset(&oldest), "a fresh allocation was made");
    }

    #[test]
    fn reclaims_released_slots_and_replaces_held_ones() {
        let mut bufs = RecvBuffers::new(64);
        let first = [1u8; 20];
        let second = [2u8; 20];
        let payloads: [&[u8]; 2] = [&first, &second];
        bufs.receive(fake_recv(&payloads, 0)).unwrap();
        let slot0 = bufs.slots[0].buf.as_ptr() as usize;
        let mut got: Vec<BytesMut> = bufs.datagrams().map(|(_, b)| b).collect();
        let held = got.pop().unwrap(); // slot 1 still referenced
        drop(got); // slot 0 released
        let held_ptr = held.as_ptr() as usize;

        let third = [3u8; 16];
        let fourth = [4u8; 17];
        let payloads: [&[u8]; 2] = [&third, &fourth];
        bufs.receive(fake_recv(&payloads, 0)).unwrap();
        // Slot 0 reused its allocation from the start, slot 1 had to get a new one.
        assert_eq!(bufs.slots[0].buf.as_ptr() as usize, slot0);
        assert_ne!(bufs.slots[1].buf.as_ptr() as usize, held_ptr);
        let got: Vec<_> = bufs.datagrams().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, vec![third.to_vec(), fourth.to_vec()]);
        // The held datagram is untouched by the new receive.
        assert_eq!(&held[..], &second[..]);

        // Once released, the parked allocation replaces the next slot that is still held.
        drop(held);
        let payloads: [&[u8]; 1] = [&third];
        bufs.receive(fake_recv(&payloads, 0)).unwrap();
        let still_held: Vec<BytesMut> = bufs.datagrams().map(|(_, b)| b).collect();
        bufs.receive(fake_recv(&payloads, 0)).unwrap();
        assert_eq!(bufs.slots[0].buf.as_ptr() as usize, held_ptr);
        assert_eq!(&still_held[0][..], &third[..]);
    }
}
