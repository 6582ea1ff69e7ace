using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Sluice.Gateway.Configuration;

namespace Sluice.Gateway.Tls;

/// <summary>
/// A certificate with its private key, read from PEM, ready for a TLS handshake: the leaf, the certificates that
/// followed it in the file (its chain, sent to the peer), and a fingerprint of the texts it was read from, so that a
/// watcher can tell whether the files changed.
/// </summary>
internal sealed class LoadedCertificate(X509Certificate2 leaf, X509Certificate2Collection chain, string fingerprint)
{
    public X509Certificate2 Leaf { get; } = leaf;

    /// <summary>Built once: SslStream would otherwise build the chain again on every handshake.</summary>
    public SslStreamCertificateContext Context { get; } = SslStreamCertificateContext.Create(leaf, chain, offline: true);

    public string Fingerprint { get; } = fingerprint;

    public string Describe() => $"{Leaf.Subject} (SHA-256 {Leaf.GetCertHashString(HashAlgorithmName.SHA256)}, valid until {Leaf.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC)";
}

/// <summary>
/// Reads the PEM files of <c>tls</c> and <c>proxy.tls</c>, and says what is wrong with them in the words of
/// <c>--check</c>: missing, unreadable, not PEM, expired (or not yet valid), key not matching. A value that starts
/// with <c>-----BEGIN</c> is the PEM text itself (an <c>env:NAME</c> holding the key); any other value is a path
/// relative to the configuration file's folder.
/// </summary>
internal static class PemCertificates
{
    private const string ServerAuthentication = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuthentication = "1.3.6.1.5.5.7.3.2";

    /// <summary>Reads a certificate and its key; null, with errors at <paramref name="certificatePath"/> or <paramref name="keyPath"/>, if they cannot be used.</summary>
    public static LoadedCertificate? LoadWithKey(
        string certificate, string key, string baseDirectory, string certificatePath, string keyPath, bool server, DateTimeOffset now, ConfigErrors errors)
    {
        var certificateText = ReadText(certificate, baseDirectory, certificatePath, errors);
        var keyText = ReadText(key, baseDirectory, keyPath, errors);
        if (certificateText is null)
        {
            return null;
        }

        var certificates = ReadCertificates(certificateText, certificate, certificatePath, errors);
        if (certificates is null)
        {
            return null;
        }

        var leaf = certificates[0];
        if (leaf.NotAfter.ToUniversalTime() < now.UtcDateTime)
        {
            errors.Add(certificatePath, $"'{certificate}' expired on {leaf.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC");
            return null;
        }

        if (leaf.NotBefore.ToUniversalTime() > now.UtcDateTime)
        {
            errors.Add(certificatePath, $"'{certificate}' is not valid before {leaf.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm} UTC");
            return null;
        }

        var usage = server ? ServerAuthentication : ClientAuthentication;
        if (leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault() is { } eku && !eku.EnhancedKeyUsages.Cast<Oid>().Any(o => o.Value == usage))
        {
            errors.Add(certificatePath, $"'{certificate}' is not for {(server ? "server" : "client")} authentication (its extended key usage lacks {usage})");
            return null;
        }

        if (keyText is null)
        {
            return null;
        }

        var keyName = Name(key);
        if (!FindKey(keyText, out var label))
        {
            errors.Add(keyPath, label == "ENCRYPTED PRIVATE KEY"
                ? $"{keyName} is an encrypted private key; give the key unencrypted (protect the file, or use env:NAME)"
                : $"{keyName} is not a PEM private key (no -----BEGIN PRIVATE KEY----- block)");
            return null;
        }

        X509Certificate2 withKey;
        try
        {
            withKey = X509Certificate2.CreateFromPem(leaf.ExportCertificatePem(), keyText);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            errors.Add(keyPath, $"{keyName} does not match the certificate '{certificate}' ({ex.Message.TrimEnd('.')})");
            return null;
        }

        if (OperatingSystem.IsWindows())
        {
            // SChannel cannot use the ephemeral key of a certificate made from PEM; a PKCS#12 round trip persists it.
            var pfx = withKey.Export(X509ContentType.Pkcs12);
            withKey.Dispose();
            withKey = X509CertificateLoader.LoadPkcs12(pfx, null);
        }

        var chain = new X509Certificate2Collection();
        chain.AddRange(certificates.Skip(1).ToArray());
        return new LoadedCertificate(withKey, chain, Fingerprint(certificateText, keyText));
    }

    /// <summary>Reads a bundle of CA certificates; null, with an error at <paramref name="path"/>, if there is none to use.</summary>
    public static X509Certificate2Collection? LoadBundle(string value, string baseDirectory, string path, ConfigErrors errors)
    {
        var text = ReadText(value, baseDirectory, path, errors);
        if (text is null || ReadCertificates(text, value, path, errors) is not { } certificates)
        {
            return null;
        }

        var bundle = new X509Certificate2Collection();
        bundle.AddRange(certificates.ToArray());
        return bundle;
    }

    /// <summary>What a watcher compares: the texts a certificate would be loaded from now, or null if one cannot be read.</summary>
    public static string? CurrentFingerprint(string certificate, string key, string baseDirectory)
    {
        var scratch = new ConfigErrors();
        var certificateText = ReadText(certificate, baseDirectory, "certificate", scratch);
        var keyText = ReadText(key, baseDirectory, "key", scratch);
        return certificateText is null || keyText is null ? null : Fingerprint(certificateText, keyText);
    }

    private static string? ReadText(string value, string baseDirectory, string path, ConfigErrors errors)
    {
        if (IsInlinePem(value))
        {
            return value;
        }

        var full = Path.GetFullPath(value, baseDirectory);
        try
        {
            return File.ReadAllText(full);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            errors.Add(path, $"'{value}' not found ({full})");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            errors.Add(path, $"'{value}' cannot be read: {ex.Message}");
        }

        return null;
    }

    private static List<X509Certificate2>? ReadCertificates(string text, string value, string path, ConfigErrors errors)
    {
        var result = new List<X509Certificate2>();
        var rest = text.AsSpan();
        while (PemEncoding.TryFind(rest, out var fields))
        {
            if (rest[fields.Label].SequenceEqual("CERTIFICATE"))
            {
                try
                {
                    result.Add(X509CertificateLoader.LoadCertificate(Convert.FromBase64String(rest[fields.Base64Data].ToString())));
                }
                catch (CryptographicException ex)
                {
                    errors.Add(path, $"'{value}' holds a CERTIFICATE block that is not a certificate: {ex.Message.TrimEnd('.')}");
                    return null;
                }
            }

            rest = rest[fields.Location.End..];
        }

        if (result.Count == 0)
        {
            errors.Add(path, $"'{value}' is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)");
            return null;
        }

        return result;
    }

    private static bool FindKey(string text, out string label)
    {
        label = string.Empty;
        var rest = text.AsSpan();
        while (PemEncoding.TryFind(rest, out var fields))
        {
            label = rest[fields.Label].ToString();
            if (label is "PRIVATE KEY" or "RSA PRIVATE KEY" or "EC PRIVATE KEY")
            {
                return true;
            }

            rest = rest[fields.Location.End..];
        }

        return false;
    }

    private static bool IsInlinePem(string value) => value.TrimStart().StartsWith("-----BEGIN", StringComparison.Ordinal);

    // Never the key's text: it may be the PEM itself.
    private static string Name(string value) => IsInlinePem(value) ? "the key's PEM text" : $"'{value}'";

    private static string Fingerprint(string certificate, string key) =>
        Convert.ToHexString(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(certificate + "\n" + key)));
}
