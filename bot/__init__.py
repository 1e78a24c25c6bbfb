"""findlora bots: thin, stateless adapters (Discord, Slack) over a shared core. No torch here."""
