-- The user ids a client may act for. A bot asserts who asked (requested_by, reporter, user,
-- moderator) and the service used to store that as given: any client could file a flag as,
-- vote as, or moderate as a user of another platform. A client whose `users` is set may only
-- assert ids that start with it (`discord:`, `slack:T0TEAM:`); '' allows any id (an operator's
-- script, the CLI's own client).
ALTER TABLE clients ADD COLUMN users text NOT NULL DEFAULT '';
