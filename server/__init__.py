"""wan-video-mcp: the MCP server core (catalog, providers, jobs, media, sandbox)."""

__version__ = "0.1.0"
