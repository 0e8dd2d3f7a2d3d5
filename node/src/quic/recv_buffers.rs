//! Receive buffers that hand datagrams to quinn-proto without copying them.
//!
//! quinn-proto takes each datagram as a `BytesMut`, decrypts it in place and hands stream data to
//! the application as `Bytes` slices of that same buffer. Receiving straight into one `BytesMut`
//! per batch slot and splitting the datagram off it avoids the copy quinn makes per datagram.
//! A slot whose earlier datagrams were all dropped (read by the application, or acknowledgements
//! processed at once) gets its allocation back without allocating or zeroing; a slot still
//! referenced gets a fresh zeroed allocation, so memory follows the data still unread.

use std::io::{self, IoSliceMut};

use bytes::BytesMut;
use quinn_udp::{BATCH_SIZE, RecvMeta};

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

    /// Makes the slot a full `len`-byte buffer again.
    fn refill(&mut self, len: usize) {
        if self.buf.len() == len {
            return;
        }
        self.buf.clear();
        if self.whole_allocation_initialised && self.buf.try_reclaim(len) {
            // SAFETY: `try_reclaim` never allocates: on success `buf` views the allocation made
            // by `Slot::fresh`, whose capacity is exactly `len` and whose every byte was zeroed
            // then and only overwritten with initialised bytes since (kernel receives and
            // quinn-proto's in-place decryption). So the first `len` bytes are initialised and
            // within capacity.
            unsafe { self.buf.set_len(len) };
        } else {
            *self = Self::fresh(len);
        }
    }
}

/// A batch of receive slots for `recvmmsg`.
pub(crate) struct RecvBuffers {
    slots: Box<[Slot; BATCH_SIZE]>,
    metas: [RecvMeta; BATCH_SIZE],
    slot_len: usize,
    received: usize,
}

impl RecvBuffers {
    /// `slot_len` must hold the largest coalesced (GRO) receive: 64 KiB, or the MTU if larger.
    pub(crate) fn new(slot_len: usize) -> Self {
        Self {
            slots: Box::new(std::array::from_fn(|_| Slot::fresh(slot_len))),
            metas: [RecvMeta::default(); BATCH_SIZE],
            slot_len,
            received: 0,
        }
    }

    /// Receives one batch with `recv` (a `recvmmsg` wrapper); returns how many slots were filled.
    pub(crate) fn receive(
        &mut self,
        recv: impl FnOnce(&mut [IoSliceMut<'_>], &mut [RecvMeta]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let slot_len = self.slot_len;
        for slot in self.slots.iter_mut() {
            slot.refill(slot_len);
        }
        let mut iovs = self
            .slots
            .each_mut()
            .map(|slot| IoSliceMut::new(&mut slot.buf[..]));
        let received = recv(&mut iovs, &mut self.metas)?;
        self.received = received.min(BATCH_SIZE);
        Ok(self.received)
    }

    /// The datagrams of the last batch: metadata and each datagram split off its slot.
    /// GRO slots holding several datagrams (`stride` < `len`) yield one item per datagram.
    pub(crate) fn datagrams(&mut self) -> impl Iterator<Item = (RecvMeta, BytesMut)> + '_ {
        let received = std::mem::take(&mut self.received);
        self.slots
            .iter_mut()
            .zip(self.metas.iter())
            .take(received)
            .flat_map(|(slot, meta)| {
                let meta = *meta;
                let len = meta.len.min(slot.buf.len());
                let stride = if meta.stride == 0 { len } else { meta.stride };
                let mut taken = 0;
                std::iter::from_fn(move || {
                    if taken >= len {
                        return None;
                    }
                    let size = stride.min(len - taken);
                    taken += size;
                    Some((meta, slot.buf.split_to(size)))
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn fake_recv(payloads: &[&[u8]], stride: usize) -> impl FnOnce(&mut [IoSliceMut<'_>], &mut [RecvMeta]) -> io::Result<usize> {
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
    fn splits_datagrams_and_gro_segments() {
        let mut bufs = RecvBuffers::new(64);
        let payloads: [&[u8]; 2] = [b"hello", b"aaabbbcc"];
        assert_eq!(bufs.receive(fake_recv(&payloads, 0)).unwrap(), 2);
        let got: Vec<_> = bufs.datagrams().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, vec![b"hello".to_vec(), b"aaabbbcc".to_vec()]);

        // A GRO slot: three datagrams of stride 3, the last shorter.
        let payloads: [&[u8]; 1] = [b"aaabbbcc"];
        assert_eq!(bufs.receive(fake_recv(&payloads, 3)).unwrap(), 1);
        let got: Vec<_> = bufs.datagrams().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, vec![b"aaa".to_vec(), b"bbb".to_vec(), b"cc".to_vec()]);
    }

    #[test]
    fn reclaims_released_slots_and_replaces_held_ones() {
        let mut bufs = RecvBuffers::new(64);
        let payloads: [&[u8]; 2] = [b"one", b"two"];
        bufs.receive(fake_recv(&payloads, 0)).unwrap();
        let mut got: Vec<BytesMut> = bufs.datagrams().map(|(_, b)| b).collect();
        let held = got.pop().unwrap(); // slot 1 still referenced
        drop(got); // slot 0 released
        let slot0 = bufs.slots[0].buf.as_ptr() as usize;
        let held_ptr = held.as_ptr() as usize;

        let payloads: [&[u8]; 2] = [b"three", b"four"];
        bufs.receive(fake_recv(&payloads, 0)).unwrap();
        // Slot 0 reused its allocation from the start, slot 1 had to get a new one.
        assert_eq!(bufs.slots[0].buf.as_ptr() as usize, slot0 - 3);
        assert_ne!(bufs.slots[1].buf.as_ptr() as usize, held_ptr);
        let got: Vec<_> = bufs.datagrams().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, vec![b"three".to_vec(), b"four".to_vec()]);
        // The held datagram is untouched by the new receive.
        assert_eq!(&held[..], b"two");
    }
}
