fn main() {
    std::process::exit(stackring::cli::main());
}
