//! World simulator.
