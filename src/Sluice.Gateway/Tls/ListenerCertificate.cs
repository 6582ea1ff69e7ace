using System.Net.Security;
using Sluice.Gateway.Configuration;
using Sluice.Gateway.Configuration.Model;

namespace Sluice.Gateway.Tls;

/// <summary>
/// The certificate of the https:// listeners, swapped while the gateway runs. Kestrel asks for it at every TLS
/// handshake (<see cref="Configure"/>), so a new certificate reaches new connections at once and open ones keep the
/// session they have. It changes when a configuration reload brings a new one, and when the files of <c>tls</c> change:
/// they are polled (a small read each second; it sees editors, <c>cp</c>, and the symlink swaps of Kubernetes secret
/// mounts alike, which file-system events do not all report) and loaded once their content has stayed the same for
/// one poll, so that a certificate and key written one after the other are not judged half-written. Files that
/// cannot be used are logged with the reason, and the certificate in use stays.
/// </summary>
internal sealed partial class ListenerCertificate : IDisposable
{
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly ITimer _timer;
    private volatile LoadedCertificate _current;
    private (TlsModel Model, string BaseDirectory)? _files;
    private string? _seen;
    private string? _refused;

    public ListenerCertificate(LoadedCertificate initial, ILogger logger, TimeProvider time)
    {
        _current = initial;
        Logger = logger;
        _time = time;
        _timer = time.CreateTimer(static state => ((ListenerCertificate)state!).Poll(), this, PollInterval, PollInterval);
    }

    public LoadedCertificate Current => _current;

    /// <summary>Set once the application's loggers exist (the certificate is needed before, to configure Kestrel).</summary>
    public ILogger Logger { get; set; }

    /// <summary>Points Kestrel's https:// endpoints at the current certificate, with HTTP/1.1 and HTTP/2 offered by ALPN.</summary>
    public void Configure(Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions kestrel) => kestrel.ConfigureHttpsDefaults(https =>
    {
        // Kestrel needs a certificate source to accept an https:// address; the context set below is what is used.
        https.ServerCertificateSelector = (_, _) => _current.Leaf;
        https.OnAuthenticate = (_, options) =>
        {
            // The prepared context carries the chain from the file, built once, rather than per handshake.
            options.ServerCertificateSelectionCallback = null;
            options.ServerCertificate = null;
            options.ServerCertificateContext = _current.Context;
        };
    });

    /// <summary>Takes the certificate of a configuration that was just applied, and watches its files from now on.</summary>
    public void Use(GatewayConfig config)
    {
        if (config is not { Tls: { } tls, Certificate: { } certificate })
        {
            return;
        }

        lock (_lock)
        {
            if (certificate.Fingerprint != _current.Fingerprint)
            {
                _current = certificate;
                Log.Loaded(Logger, certificate.Describe());
            }

            _files = (tls, config.BaseDirectory);
            _seen = certificate.Fingerprint;
            _refused = null;
        }
    }

    public void Dispose() => _timer.Dispose();

    private void Poll()
    {
        lock (_lock)
        {
            if (_files is not var (tls, baseDirectory))
            {
                return;
            }

            var now = PemCertificates.CurrentFingerprint(tls.Certificate, tls.Key, baseDirectory);
            var settled = now == _seen;
            _seen = now;
            // Unchanged, still being written, or already refused as it is: nothing to do. A file that cannot be read
            // at all is judged once it has stayed that way for a poll too (a rename in progress).
            if (!settled || now == _current.Fingerprint || (now is not null && now == _refused) || (now is null && _refused == "unreadable"))
            {
                return;
            }

            var errors = new ConfigErrors();
            var loaded = PemCertificates.LoadWithKey(tls.Certificate, tls.Key, baseDirectory, "tls.certificate", "tls.key", server: true, _time.GetUtcNow(), errors);
            if (loaded is null)
            {
                _refused = now ?? "unreadable";
                Log.Refused(Logger, string.Join("; ", errors.InFileOrder(JsonPositions.Empty)), _current.Describe());
                return;
            }

            _current = loaded;
            _refused = null;
            Log.Loaded(Logger, loaded.Describe());
        }
    }

    private static partial class Log
    {
        [LoggerMessage(510, LogLevel.Information, "TLS certificate loaded for new handshakes: {Certificate}. Open connections keep theirs.")]
        public static partial void Loaded(ILogger logger, string certificate);

        [LoggerMessage(511, LogLevel.Error, "TLS certificate files changed but cannot be used: {Errors}. The certificate in use stays: {Current}")]
        public static partial void Refused(ILogger logger, string errors, string current);
    }
}
