// A bare TCP relay for bench:gateway: bytes in, bytes out, nothing read. What it adds to a call
// is the floor for any proxy hop on this machine (two more socket writes and process wake-ups),
// measured beside the gateway in the same run. Usage: node bench/tcp-relay.ts HOST PORT
import { connect, createServer } from "node:net";

const [host, port] = [process.argv[2] as string, Number(process.argv[3])];
const server = createServer({ noDelay: true }, (socket) => {
  const upstream = connect({ host, port, noDelay: true });
  socket.on("data", (chunk) => upstream.write(chunk));
  upstream.on("data", (chunk) => socket.write(chunk));
  socket.on("close", () => upstream.destroy());
  upstream.on("close", () => socket.destroy());
  socket.on("error", () => socket.destroy());
  upstream.on("error", () => upstream.destroy());
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address() as { port: number };
  console.log(`listening on http://127.0.0.1:${address.port}`);
});
