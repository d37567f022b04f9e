//! The gRPC wire types, generated from `proto/stackring.proto` by build.rs: public, the API that
//! programs (and the integration tests) use.

/// The `stackring.v1` package.
pub mod pb {
    tonic::include_proto!("stackring.v1");
}

/// The encoded descriptor set of our protos, for reflection.
pub(crate) const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/stackring_descriptor.bin"));
