"""Running the server at scale: replicas behind nginx (cluster.py), Kubernetes and KServe manifests."""
