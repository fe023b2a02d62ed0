//! multicast
