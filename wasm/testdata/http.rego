package h

# A policy that would reach the network: the engine must refuse to load it.
allow if http.send({"method": "GET", "url": input.url}).status_code == 200
