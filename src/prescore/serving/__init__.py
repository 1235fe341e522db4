"""The store's one face: snapshots, the publish log, the key index, the client, HTTP and BI views."""
