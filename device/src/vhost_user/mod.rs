//! vhost-user front door.
