//! Listeners: the public TLS listener, the optional plaintext listener and
//! the admin listener.

pub mod admin;
pub mod listen;
