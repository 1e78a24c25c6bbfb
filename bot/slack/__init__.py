"""The Slack app: slack-bolt's AsyncApp with listeners by kind (events, shortcuts, actions, commands,
views) over the shared bot core."""
