using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Sluice.Gateway.Tests.Infrastructure;

/// <summary>
/// The real gateway, started as a process (<c>dotnet Sluice.Gateway.dll --config FILE --urls URL</c>) and driven from
/// outside, as its users drive it. Standard output and error are captured for the assertions on logs.
/// </summary>
public sealed class GatewayProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly ConcurrentQueue<string> _error = new();

    private GatewayProcess(Process process, int port)
    {
        _process = process;
        Port = port;
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                _output.Enqueue(e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                _error.Enqueue(e.Data);
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Port { get; }

    public string Output => string.Join('\n', _output);

    public string Error => string.Join('\n', _error);

    public Uri Ws(string pathAndQuery) => new($"ws://127.0.0.1:{Port}{pathAndQuery}");

    public Uri Http(string pathAndQuery) => new($"http://127.0.0.1:{Port}{pathAndQuery}");

    public bool HasExited => _process.HasExited;

    public int ProcessId => _process.Id;

    public int ExitCode => _process.ExitCode;

    public static string GatewayDll { get; } = FindGatewayDll();

    /// <summary>Starts the gateway and waits until it listens; with no config file, the embedded demo.</summary>
    // The last line of the block the gateway prints once it listens (its routes, dashboard, limits, I/O and GC).
    private const string StartedLine = "  GC: ";

    public static async Task<GatewayProcess> StartAsync(string? configPath, IDictionary<string, string>? environment = null, string? urls = null, string? workingDirectory = null, int? openFileLimit = null)
    {
        var port = FreePort();
        var arguments = new List<string> { GatewayDll };
        if (configPath is not null)
        {
            arguments.AddRange(["--config", configPath]);
        }

        arguments.AddRange(["--urls", urls ?? $"http://127.0.0.1:{port}"]);
        var process = Start(arguments, environment, workingDirectory, openFileLimit);
        var gateway = new GatewayProcess(process, urls is null ? port : new Uri(urls.Split(';')[0]).Port);
        await gateway.WaitForOutputAsync(StartedLine, TimeSpan.FromSeconds(30));
        return gateway;
    }

    /// <summary>Starts the gateway with no --urls flag, so it listens where the file's <c>listen</c> says.</summary>
    public static async Task<GatewayProcess> StartWithoutUrlsAsync(string configPath, int expectedPort)
    {
        var process = Start([GatewayDll, "--config", configPath], null, null);
        var gateway = new GatewayProcess(process, expectedPort);
        await gateway.WaitForOutputAsync(StartedLine, TimeSpan.FromSeconds(30));
        return gateway;
    }

    /// <summary>Runs the gateway to completion (for --check and invalid configurations).</summary>
    public static Task<(int ExitCode, string Output, string Error)> RunAsync(params string[] arguments) => RunAsync(arguments, null);

    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(string[] arguments, IDictionary<string, string>? environment)
    {
        using var process = Start([GatewayDll, .. arguments], environment, null);
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, (await output).Trim(), (await error).Trim());
    }

    public async Task WaitForOutputAsync(string text, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(15));
        while (!_output.Any(l => l.Contains(text, StringComparison.Ordinal)))
        {
            if (_process.HasExited || DateTime.UtcNow > deadline)
            {
                throw new InvalidOperationException($"The gateway did not print '{text}'. Output:\n{Output}\nErrors:\n{Error}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>SIGTERM, as a service manager stops it; returns the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan? timeout = null)
    {
        if (!_process.HasExited)
        {
            using var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            await kill!.WaitForExitAsync();
        }

        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            try
            {
                await StopAsync(TimeSpan.FromSeconds(15));
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
            }
        }

        _process.Dispose();
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static Process Start(IEnumerable<string> arguments, IDictionary<string, string>? environment, string? workingDirectory, int? openFileLimit = null)
    {
        var info = new ProcessStartInfo(openFileLimit is null ? "dotnet" : "bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Path.GetTempPath(),
        };
        if (openFileLimit is { } limit)
        {
            // A lower open-file limit for this process only; exec keeps the pid, so SIGTERM still reaches the gateway.
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add($"ulimit -n {limit} && exec dotnet \"$@\"");
            info.ArgumentList.Add("bash");
        }

        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }

        return Process.Start(info)!;
    }

    private static string FindGatewayDll()
    {
        // The same configuration as the tests (bin/Release/... or bin/Debug/...).
        var configuration = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            var candidate = Path.Combine(directory.FullName, "src", "Sluice.Gateway", "bin", configuration, "net10.0", "Sluice.Gateway.dll");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException("Sluice.Gateway.dll was not found; build the solution first.");
    }
}
