//! `sixfold-gateway certs ...`: the cluster PKI. Placeholder until the lead fills it in.

/// `sixfold-gateway certs` arguments (taken as they come for now).
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(_args: CertsArgs) -> anyhow::Result<()> {
    anyhow::bail!("`sixfold-gateway certs` is not yet implemented")
}
