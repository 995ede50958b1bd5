"""A stock Python gRPC client (grpcio + grpcio-reflection, which speak reflection v1alpha only)
discovering the hub's API as Postman or grpcui would: list the services, then resolve one
service's methods and message fields through reflection alone. Prints JSON.

usage: grpc_reflect.py HOST:PORT SERVICE
"""

import json
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    target, service = sys.argv[1], sys.argv[2]
    with grpc.insecure_channel(target) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(db.get_services())
        pool = DescriptorPool(db)
        svc = pool.FindServiceByName(service)
        methods = {
            m.name: {
                "input": m.input_type.full_name,
                "fields": [f.name for f in m.input_type.fields],
            }
            for m in svc.methods
        }
    print(json.dumps({"services": services, "methods": methods}))


if __name__ == "__main__":
    main()
