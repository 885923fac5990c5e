//! The HTTP upload service as a program: `cargo run -p http-service` (add
//! `--features redis -- --redis URL` for a replica on a Redis server). See the library
//! of this package for the endpoints, the options and the shutdown.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options =
        http_service::Options::parse(std::env::args().skip(1), |var| std::env::var(var).ok())?;
    http_service::run(options).await
}
