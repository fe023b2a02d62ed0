pub mod group;
pub mod store;
