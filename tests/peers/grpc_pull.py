"""A stock Python gRPC receiver (grpcio only: no generated code, the API comes from the hub's
reflection) pulling its first document over edt.hub.v1.ReceiverDelivery/PullDocuments, as a
practice system would. Prints JSON: the document's size, or the gRPC status it got.

usage: grpc_pull.py HOST:PORT TOKEN [MAX_RECEIVE_BYTES]
  MAX_RECEIVE_BYTES sets grpc.max_receive_message_length (grpcio's default is 4 MiB).
"""

import json
import sys

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    target, token = sys.argv[1], sys.argv[2]
    options = []
    if len(sys.argv) > 3:
        options.append(("grpc.max_receive_message_length", int(sys.argv[3])))
    with grpc.insecure_channel(target, options=options) as channel:
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        request = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("edt.hub.v1.PullDocumentsRequest")
        )
        document = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("edt.hub.v1.ReceivedDocument")
        )
        pull = channel.unary_stream(
            "/edt.hub.v1.ReceiverDelivery/PullDocuments",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=document.FromString,
        )
        stream = pull(
            request(), metadata=[("authorization", f"Bearer {token}")], timeout=20
        )
        try:
            doc = next(stream)
            print(json.dumps({"payload_bytes": len(doc.payload)}))
        except grpc.RpcError as e:
            print(json.dumps({"code": e.code().name, "details": e.details()}))
        finally:
            stream.cancel()


if __name__ == "__main__":
    main()
