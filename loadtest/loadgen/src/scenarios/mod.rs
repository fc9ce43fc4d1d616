//! One file per command of `loadgen`: its options (`Args`) and its run, which returns
//! the one JSON object of figures `main` prints last. `seed` writes the users file the
//! others read; `connect`, `personal`, `broadcast`, `storm` and `overload` drive the
//! clients; `soak` is the hour of mixed load of `loadtest/soak.sh`.

pub mod broadcast;
pub mod connect;
pub mod overload;
pub mod personal;
pub mod seed;
pub mod soak;
pub mod storm;
