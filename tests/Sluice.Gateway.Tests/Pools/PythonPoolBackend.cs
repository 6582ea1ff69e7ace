using System.Diagnostics;
using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Pools;

/// <summary>
/// A pool member run by /usr/bin/python3 with the websockets package, on a port the test chooses so that it can die
/// and come back at the same address: it sends its name on connect, then echoes; <c>GET /healthz</c> answers 200.
/// </summary>
public sealed class PythonPoolBackend : IAsyncDisposable
{
    private const string Script = """
        import asyncio, http, sys
        import websockets

        name, port = sys.argv[1], int(sys.argv[2])

        async def process_request(path, headers):
            if path == "/healthz":
                return http.HTTPStatus.OK, [("Content-Type", "text/plain")], b"ok\n"
            return None

        async def handler(ws, path=None):
            await ws.send(name)
            async for message in ws:
                await ws.send(message)

        async def main():
            async with websockets.serve(handler, "127.0.0.1", port, process_request=process_request):
                print("LISTENING", flush=True)
                await asyncio.Future()

        asyncio.run(main())
        """;

    private static readonly string s_scriptPath = WriteScript();
    private Process? _process;

    private PythonPoolBackend(string name, int port)
    {
        Name = name;
        Port = port;
    }

    public string Name { get; }

    public int Port { get; }

    public string Authority => $"127.0.0.1:{Port}";

    public static async Task<PythonPoolBackend> StartAsync(string name)
    {
        var backend = new PythonPoolBackend(name, GatewayProcess.FreePort());
        await backend.StartAgainAsync();
        return backend;
    }

    /// <summary>Starts the process (again) on the same port.</summary>
    public async Task StartAgainAsync()
    {
        var info = new ProcessStartInfo("/usr/bin/python3") { ArgumentList = { s_scriptPath, Name, Port.ToString(System.Globalization.CultureInfo.InvariantCulture) } };
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start python3");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var line = await process.StandardOutput.ReadLineAsync(timeout.Token);
        if (line != "LISTENING")
        {
            throw new InvalidOperationException($"backend {Name} did not start: {line} {await process.StandardError.ReadToEndAsync(timeout.Token)}");
        }

        _process = process;
    }

    /// <summary>Kills the process: its connections drop and its port refuses.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await process.WaitForExitAsync(timeout.Token);
        }

        _process?.Dispose();
        _process = null;
    }

    public async ValueTask DisposeAsync() => await KillAsync();

    private static string WriteScript()
    {
        var path = Path.Combine(Path.GetTempPath(), $"sluice-pool-backend-{Environment.ProcessId}.py");
        File.WriteAllText(path, Script);
        return path;
    }
}
