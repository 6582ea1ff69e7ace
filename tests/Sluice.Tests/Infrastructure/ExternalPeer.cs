using System.Diagnostics;

namespace Sluice.Tests.Infrastructure;

/// <summary>The non-.NET WebSocket implementations the tests talk to.</summary>
public enum PeerKind
{
    /// <summary>Debian's python3-websockets, run by /usr/bin/python3 (tests/interop/peer.py).</summary>
    Python,

    /// <summary>node `ws` from npm (tests/interop/peer.mjs).</summary>
    Node,
}

/// <summary>
/// A WebSocket server or client process written in Python or JavaScript, so that Sluice is tested against
/// implementations it shares no code with. The scripts live in tests/interop; ./test.sh installs their packages.
/// </summary>
public sealed class ExternalPeer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _lines = new();

    private ExternalPeer(Process process, int port)
    {
        _process = process;
        Port = port;
        _ = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                _lines.Enqueue(line);
            }
        });
    }

    /// <summary>Waits for the server to print a line starting with <paramref name="prefix"/> (e.g. "CLOSED /path").</summary>
    public async Task<string> WaitForLineAsync(string prefix, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            var line = _lines.FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
            if (line is not null)
            {
                return line;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"The peer did not print '{prefix}'; it printed: {string.Join(" | ", _lines)}");
            }

            await Task.Delay(20);
        }
    }

    public int Port { get; }

    public static string InteropDirectory { get; } = FindInteropDirectory();

    public Uri Uri(string pathAndQuery) => new($"ws://127.0.0.1:{Port}{pathAndQuery}");

    public string Authority => $"127.0.0.1:{Port}";

    public static async Task<ExternalPeer> StartServerAsync(PeerKind kind, bool deflate = false)
    {
        var process = Start(kind, ["server"], deflate);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (true)
        {
            var line = await process.StandardOutput.ReadLineAsync(timeout.Token)
                ?? throw new InvalidOperationException($"{kind} peer exited: {await process.StandardError.ReadToEndAsync()}");
            if (line.StartsWith("LISTENING ", StringComparison.Ordinal))
            {
                return new ExternalPeer(process, int.Parse(line["LISTENING ".Length..], System.Globalization.CultureInfo.InvariantCulture));
            }
        }
    }

    /// <summary>Runs a client scenario (see peer.py) and returns its "OK ..." line; fails the test otherwise.</summary>
    public static async Task<string> RunClientAsync(PeerKind kind, Uri url, string scenario)
    {
        using var process = Start(kind, ["client", url.ToString(), scenario], deflate: false);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var error = process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        var lines = (await output).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var last = lines.LastOrDefault() ?? string.Empty;
        Assert.True(process.ExitCode == 0 && last.StartsWith("OK", StringComparison.Ordinal),
            $"{kind} client '{scenario}' against {url} failed (exit {process.ExitCode}): {string.Join(" | ", lines)} {await error}");
        return last;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private static Process Start(PeerKind kind, string[] arguments, bool deflate)
    {
        var info = kind == PeerKind.Python
            ? new ProcessStartInfo("/usr/bin/python3") { ArgumentList = { Path.Combine(InteropDirectory, "peer.py") } }
            : new ProcessStartInfo("node") { ArgumentList = { Path.Combine(InteropDirectory, "peer.mjs") } };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["PEER_DEFLATE"] = deflate ? "1" : "0";
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.WorkingDirectory = InteropDirectory;
        return Process.Start(info) ?? throw new InvalidOperationException($"Could not start the {kind} peer.");
    }

    private static string FindInteropDirectory()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            var candidate = Path.Combine(directory.FullName, "tests", "interop");
            if (File.Exists(Path.Combine(candidate, "peer.py")))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException("tests/interop was not found above " + AppContext.BaseDirectory);
    }
}
