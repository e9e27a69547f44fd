"""Storage: reading Delta transaction logs and addressing table files, on local disk or an S3-compatible store.

The lowest stage after the datasets: the catalog, the provider and the server read tables through it.
"""
