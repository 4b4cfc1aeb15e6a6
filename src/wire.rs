//! `RowBatch` as pre-encoded bytes: stored chunks go to the wire without per-row work.
//!
//! The `.proto` declares `RowBatch { uint32 row_count = 1; repeated Column columns = 2; }` and every
//! external client sees exactly that. Inside the gateway the generated code refers to this type
//! instead (`extern_path` in `build.rs`): it holds the message's encoded fields, so an unmasked
//! pull sends a stored chunk as it is, and a masked pull re-encodes only the masked columns.

// prost offers no other way to build a DecodeError for a malformed pre-encoded batch.
#![allow(deprecated)]

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{decode_varint, encode_key, encode_varint, encoded_len_varint, DecodeContext, WireType};
use prost::DecodeError;

use crate::pb::Column;

/// Field number of `RowBatch.row_count`.
const ROW_COUNT_TAG: u32 = 1;
/// Field number of `RowBatch.columns`.
const COLUMNS_TAG: u32 = 2;

/// A `bth.gateway.v1.RowBatch`, kept as its encoded fields (no length prefix).
///
/// Invariant: `encoded` is a valid protobuf encoding of the fields of a `RowBatch` message
/// when built by [`RowBatch::from_columns`] or [`RowBatch::from_parts`]; a value decoded from
/// the network holds whatever the peer sent and is checked by [`RowBatch::decode`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RowBatch {
    encoded: Bytes,
}

impl std::fmt::Debug for RowBatch {
    // Never print values: they may be personal information.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowBatch").field("encoded_len", &self.encoded.len()).finish()
    }
}

/// A decoded `RowBatch`, for code that needs the values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DecodedBatch {
    /// Rows in the batch.
    #[prost(uint32, tag = "1")]
    pub row_count: u32,
    /// One column per field, in the stream's field order.
    #[prost(message, repeated, tag = "2")]
    pub columns: Vec<Column>,
}

impl RowBatch {
    /// Wraps bytes that are already the encoded fields of a `RowBatch` (a stored chunk).
    pub fn from_encoded(encoded: Bytes) -> Self {
        RowBatch { encoded }
    }

    /// Encodes typed columns.
    pub fn from_columns(row_count: u32, columns: Vec<Column>) -> Self {
        let batch = DecodedBatch { row_count, columns };
        RowBatch { encoded: Bytes::from(prost::Message::encode_to_vec(&batch)) }
    }

    /// Assembles a batch from already-encoded column payloads (each the encoding of one
    /// `Column`), copying each once.
    pub fn from_parts(row_count: u32, columns: &[Bytes]) -> Self {
        let len = 1
            + encoded_len_varint(u64::from(row_count))
            + columns.iter().map(|c| 1 + encoded_len_varint(c.len() as u64) + c.len()).sum::<usize>();
        let mut buf = Vec::with_capacity(len);
        if row_count != 0 {
            encode_key(ROW_COUNT_TAG, WireType::Varint, &mut buf);
            encode_varint(u64::from(row_count), &mut buf);
        }
        for c in columns {
            encode_key(COLUMNS_TAG, WireType::LengthDelimited, &mut buf);
            encode_varint(c.len() as u64, &mut buf);
            buf.put_slice(c);
        }
        RowBatch { encoded: Bytes::from(buf) }
    }

    /// The encoded fields: what travels inside the enclosing message.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// Decodes the values.
    pub fn decode(&self) -> Result<DecodedBatch, DecodeError> {
        <DecodedBatch as prost::Message>::decode(self.encoded.clone())
    }

    /// Splits the batch into its row count and its columns' encoded payloads without decoding
    /// any value: one pass over the field keys.
    pub fn split(&self) -> Result<(u32, Vec<Bytes>), DecodeError> {
        let mut buf = self.encoded.clone();
        let mut row_count = 0u32;
        let mut columns = Vec::new();
        while buf.has_remaining() {
            let (tag, wire_type) = prost::encoding::decode_key(&mut buf)?;
            match (tag, wire_type) {
                (ROW_COUNT_TAG, WireType::Varint) => {
                    // A uint32 read from a wider varint is truncated (protobuf's rule), as
                    // `decode` does: both readings of one batch agree.
                    row_count = decode_varint(&mut buf)? as u32;
                }
                (COLUMNS_TAG, WireType::LengthDelimited) => {
                    let len = decode_varint(&mut buf)?;
                    let len = usize::try_from(len).map_err(|_| DecodeError::new("length overflow"))?;
                    if len > buf.remaining() {
                        return Err(DecodeError::new("buffer underflow"));
                    }
                    columns.push(buf.split_to(len));
                }
                _ => prost::encoding::skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
            }
        }
        Ok((row_count, columns))
    }
}

impl prost::Message for RowBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.encoded);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        _ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Keep the field exactly as received: re-emit its key, copy its payload.
        let mut out = Vec::from(std::mem::take(&mut self.encoded));
        encode_key(tag, wire_type, &mut out);
        let copy = |n: usize, buf: &mut dyn Buf, out: &mut Vec<u8>| {
            if n > buf.remaining() {
                return Err(DecodeError::new("buffer underflow"));
            }
            let start = out.len();
            out.resize(start + n, 0);
            buf.copy_to_slice(&mut out[start..]);
            Ok(())
        };
        match wire_type {
            WireType::Varint => encode_varint(decode_varint(buf)?, &mut out),
            WireType::SixtyFourBit => copy(8, buf, &mut out)?,
            WireType::ThirtyTwoBit => copy(4, buf, &mut out)?,
            WireType::LengthDelimited => {
                let len = decode_varint(buf)?;
                encode_varint(len, &mut out);
                let len = usize::try_from(len).map_err(|_| DecodeError::new("length overflow"))?;
                copy(len, buf, &mut out)?;
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(DecodeError::new("groups are not supported in RowBatch"));
            }
        }
        self.encoded = Bytes::from(out);
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    fn clear(&mut self) {
        self.encoded = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{pull_response, PullResponse};
    use prost::Message;

    fn sample() -> Vec<Column> {
        vec![
            Column { strings: vec!["a".into(), "b".into()], ..Default::default() },
            Column { ints: vec![-3], nulls: vec![0], ..Default::default() },
        ]
    }

    #[test]
    fn a_pre_encoded_batch_round_trips_through_an_enclosing_message() {
        let batch = RowBatch::from_columns(2, sample());
        let msg = PullResponse { msg: Some(pull_response::Msg::Batch(batch.clone())) };
        let bytes = msg.encode_to_vec();
        let back = PullResponse::decode(bytes.as_slice()).unwrap();
        let Some(pull_response::Msg::Batch(got)) = back.msg else { panic!("not a batch") };
        assert_eq!(got, batch);
        assert_eq!(got.decode().unwrap(), DecodedBatch { row_count: 2, columns: sample() });
    }

    #[test]
    fn split_and_from_parts_select_columns_without_decoding() {
        let batch = RowBatch::from_columns(2, sample());
        let (rows, cols) = batch.split().unwrap();
        assert_eq!(rows, 2);
        assert_eq!(cols.len(), 2);
        let only_second = RowBatch::from_parts(rows, &cols[1..]);
        assert_eq!(only_second.decode().unwrap().columns, vec![sample()[1].clone()]);
        assert_eq!(RowBatch::from_parts(rows, &cols), batch);
    }

    #[test]
    fn split_reads_a_wide_row_count_as_decode_does() {
        let batch = RowBatch::from_encoded(Bytes::from_static(&[8, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1]));
        assert_eq!(batch.decode().unwrap().row_count, u32::MAX);
        assert_eq!(batch.split().unwrap(), (u32::MAX, Vec::new()));
    }

    #[test]
    fn a_truncated_batch_is_refused() {
        let batch = RowBatch::from_columns(2, sample());
        let cut = RowBatch::from_encoded(batch.encoded().slice(..batch.encoded().len() - 1));
        assert!(cut.split().is_err());
        assert!(cut.decode().is_err());
    }
}
