//! The services built from the configuration that the API and the worker
//! both use, built here once so that both roles see the same: the sealer of
//! stored secrets, the blob store, the outbound guard and the fetcher on it,
//! the embedder and the retriever, and the catalogue of tools.

use std::sync::Arc;

use steward_auth::Sealer;
use steward_config::Config;
use steward_knowledge::{Blobs, FetchPolicy, Fetcher, Retriever, embedder_from_config};
use steward_llm::Embeddings;
use steward_outbound::Guard;
use steward_store::Store;
use steward_tools::Catalogue;
use steward_tools::mcp::McpServer;

#[derive(Clone)]
pub struct Services {
    pub sealer: Arc<Sealer>,
    pub blobs: Blobs,
    pub guard: Guard,
    pub fetcher: Fetcher,
    /// Vectors for passages and questions, when configured.
    pub embedder: Option<Arc<Embeddings>>,
    pub retriever: Retriever,
    /// The tools organizations may give their chatbots.
    pub tools: Catalogue,
    /// Sends to the channels' providers, and asks them whether a channel's
    /// configuration works when it is saved.
    pub channels: steward_channels::Sender,
}

impl Services {
    /// `config` must have its secrets filled in (`steward_config::ensure_secrets`).
    pub fn from_config(config: &Config, store: Arc<dyn Store>) -> Result<Self, String> {
        let guard = Guard::new(config.outbound.allow_private_networks);
        let embedder = embedder_from_config(&config.embeddings);
        let sealer = Arc::new(Self::sealer(config)?);
        let tools = Catalogue::new(
            store.clone(),
            sealer.clone(),
            guard.clone(),
            Self::tool_servers(config)?,
            config.jobs.max_attempts,
        );
        Ok(Self {
            channels: Self::channel_sender(config, guard.clone()),
            sealer,
            tools,
            blobs: Blobs::from_config(&config.storage, &config.data_dir)
                .map_err(|e| e.to_string())?,
            fetcher: Fetcher::new(FetchPolicy::from_config(&config.knowledge), guard.clone()),
            guard,
            retriever: Retriever::new(store.clone(), embedder.clone()),
            embedder,
        })
    }

    /// The channels' providers at the operator's configured addresses.
    pub fn channel_sender(config: &Config, guard: Guard) -> steward_channels::Sender {
        steward_channels::Sender::new(
            std::time::Duration::from_secs(config.channels.send_timeout_secs),
            steward_channels::ProviderApis {
                whatsapp: config.channels.whatsapp_api_url.clone(),
                slack: config.channels.slack_api_url.clone(),
                telegram: config.channels.telegram_api_url.clone(),
                teams_login: config.channels.teams_login_url.clone(),
            },
            guard,
        )
    }

    /// The operator's MCP servers (`[[tools.servers]]`), their headers read.
    fn tool_servers(config: &Config) -> Result<Vec<McpServer>, String> {
        config
            .tools
            .servers
            .iter()
            .map(|server| {
                if steward_tools::builtin::SERVERS.contains(&server.name.as_str()) {
                    return Err(format!(
                        "tools.servers: {} is the name of one of Steward's own tools",
                        server.name
                    ));
                }
                Ok(McpServer {
                    name: server.name.clone(),
                    url: server.url.clone(),
                    headers: server.resolved_headers()?,
                    timeout: std::time::Duration::from_secs(server.timeout_secs),
                })
            })
            .collect()
    }

    /// Seals and opens stored secrets: the master key, and during a rotation
    /// the previous one (which opens, never seals).
    pub fn sealer(config: &Config) -> Result<Sealer, String> {
        let master = steward_config::master_key_bytes(config).map_err(|e| e.to_string())?;
        let previous =
            steward_config::previous_master_key_bytes(config).map_err(|e| e.to_string())?;
        Ok(Sealer::new(&master).with_previous(previous.as_ref()))
    }
}
