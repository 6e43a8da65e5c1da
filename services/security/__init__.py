"""What keeps the local stack safe to leave running: requests from web pages refused (``guard``), every AWS
request's SigV4 signature verified against its key's secret (``sigv4``), refusals in each service's own
protocol (``refusals``)."""
