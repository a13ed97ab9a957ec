"""FusionDesk runtime: settings, the `fusiondesk` command, channels, handoff and web pages."""

from bot.env import apply_process_env

apply_process_env()
