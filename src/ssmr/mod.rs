//! ssmr
