//! Nothing to use: this package holds the benchmarks of `async_tasks_recorder` in
//! `benches/` (see BENCHMARKS.md at the repository's root).
