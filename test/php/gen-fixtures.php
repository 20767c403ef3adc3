<?php
/*
 * gen-fixtures.php — regenerate phpsession/testdata/ from real PHP + Symfony.
 *
 * Usage (from the repository root):
 *
 *   php test/php/gen-fixtures.php                 # writes phpsession/testdata/
 *   php test/php/gen-fixtures.php /some/out/dir   # writes there instead
 *
 * For every case below it runs test/php/write-session.php (a separate PHP
 * process, exactly as the other tests use it) with the "files" store into a
 * temporary directory, copies the raw sess_<id> file PHP wrote to
 * <out>/<case>.sess, and writes <out>/<case>.json: what PHP put in, in the
 * JSON shape of phpsession.Result plus the serialize handler, e.g.
 *
 *   {"serialize_handler":"php","firewalls":[{"firewall":"main","authenticated":true,
 *     "token":{"token_class":"Symfony\\...\\UsernamePasswordToken","user_identifier":"alice",
 *              "user_class":"Symfony\\...\\InMemoryUser","roles":["ROLE_USER"]}}]}
 *
 * The expected token facts come from the PHP token objects themselves
 * (get_class, getUserIdentifier(), getRoleNames()); the "reason" strings of
 * unauthenticated firewalls mirror phpsession's wording.
 *
 * Besides the hand-picked cases, a matrix writes every token kind and every
 * user kind through every serialize handler (php, php_binary, php_serialize
 * and, when the extension is loaded, igbinary): m_<kind>_<handler>.
 *
 * Older Symfony layouts (2.8 to 4.4 on PHP 5/7, 6.x, 7.x) come from
 * test/php/gen-legacy.php, run once per layout in its own process because
 * it defines look-alike classes under Symfony's own names: legacy_*.
 *
 * The .sess files contain Symfony's _sf2_meta timestamps, so every run
 * changes them; the .json files only change when the cases do.
 *
 * Requirements: see write-session.php (PHP 8.2 CLI, Debian Symfony 5.4).
 */

declare(strict_types=1);

require_once __DIR__.'/write-session.php'; // for wsgate_token(); its main() does not run

use Symfony\Component\Security\Core\Authentication\Token\AnonymousToken;
use Symfony\Component\Security\Core\Authentication\Token\SwitchUserToken;
use Symfony\Component\Security\Core\User\UserInterface;

/** The serialize handlers this PHP can write. */
function wsgate_handlers(): array
{
    $h = ['php', 'php_binary', 'php_serialize'];
    if (extension_loaded('igbinary')) {
        $h[] = 'igbinary';
    }

    return $h;
}

/** Identifier configuration the decoder needs for the app user classes. */
const WSGATE_BY_CLASS = ['App\\Entity\\SerializableUser' => ['1'], 'App\\Entity\\Member' => ['email']];

/** The matrix: every token kind and every user kind through every handler. */
function wsgate_matrix(): array
{
    $cases = [];
    $tokens = ['username_password', 'remember_me', 'post_authentication', 'pre_authenticated', 'switch_user', 'anonymous'];
    $users = ['in_memory', 'legacy_user', 'string', 'entity', 'serializable_entity'];
    foreach (wsgate_handlers() as $h) {
        foreach ($tokens as $t) {
            $cases["m_{$t}_{$h}"] = ["$t token, InMemoryUser, handler $h",
                ['user' => 'anonymous' === $t ? null : 'u-'.$t, 'roles' => ['ROLE_USER', 'ROLE_X'], 'firewall' => 'main', 'token' => $t, 'serialize_handler' => $h,
                 'attributes_before' => ['before|1' => 'x|y'], 'attributes_after' => ['after' => ['a|b' => 1.5]]],
                [], ];
        }
        foreach ($users as $u) {
            $cases["m_user_{$u}_{$h}"] = ["UsernamePasswordToken, user kind $u, handler $h",
                ['user' => 'user-'.$u.'@example.org', 'roles' => ['ROLE_USER'], 'firewall' => 'main', 'user_class' => $u, 'serialize_handler' => $h],
                [], ];
        }
    }

    return $cases;
}

/** The cases: name => [description, write-session.php input, extra firewalls to query]. */
function wsgate_cases(): array
{
    $weird = 'bob|x;y"z ünïcødé 😀 {s:1:"a";}';

    return wsgate_matrix() + [
        'upt_inmemory_roles' => [
            'UsernamePasswordToken around InMemoryUser with several roles (the typical ~1 KiB session)',
            ['user' => 'alice', 'roles' => ['ROLE_USER', 'ROLE_ADMIN', 'ROLE_EDITOR'], 'firewall' => 'main'],
            ['api'],
        ],
        'upt_weird_identifier' => [
            'user identifier containing | ; " braces and non-ASCII UTF-8',
            ['user' => $weird, 'roles' => ['ROLE_USER'], 'firewall' => 'main'],
            [],
        ],
        'two_firewalls' => [
            'two firewalls with different users in one session; a third one is absent',
            ['tokens' => [
                ['firewall' => 'main', 'user' => 'alice', 'roles' => ['ROLE_USER']],
                ['firewall' => 'admin', 'user' => 'root', 'roles' => ['ROLE_ADMIN', 'ROLE_SUPER_ADMIN']],
            ]],
            ['api'],
        ],
        'no_token' => [
            'anonymous visitor: a session without any security token',
            ['user' => null],
            ['main'],
        ],
        'entity_username_email' => [
            'app entity with both $username and $email whose getUserIdentifier() is the e-mail (configured by class; without it the identifier is ambiguous)',
            ['user' => 'mia@example.org', 'roles' => ['ROLE_USER'], 'firewall' => 'main', 'user_class' => 'entity_username_email'],
            [],
        ],
        'string_user' => [
            'UsernamePasswordToken whose user is a plain string (allowed, deprecated, in 5.4)',
            ['user' => 'carol', 'roles' => ['ROLE_USER'], 'firewall' => 'main', 'user_class' => 'string'],
            [],
        ],
        'anonymous_token' => [
            'AnonymousToken stored under _security_main (Symfony < 5.4 style anonymous firewall)',
            ['user' => null, 'token' => 'anonymous', 'firewall' => 'main'],
            [],
        ],
        'no_roles' => [
            'UsernamePasswordToken without roles: Symfony 5.4 marks it unauthenticated',
            ['user' => 'erin', 'roles' => [], 'firewall' => 'main'],
            [],
        ],
        'attributes_around' => [
            'other attributes (values containing | and serialized-looking text) before and after the token, plus flashes',
            [
                'user' => 'frank', 'roles' => ['ROLE_USER'], 'firewall' => 'main',
                'attributes_before' => [
                    '_csrf/https-authenticate' => 'tok|en;"x"',
                    'note' => '_security_main|s:4:"evil";',
                    'list' => [1, 'a|b', ['x' => 'y|z'], 2.5, true, null],
                ],
                'attributes_after' => [
                    '_security.main.target_path' => 'https://app.example/a|b?x=1;y=2',
                    'count' => 42, 'pi' => 3.14159, 'flag' => false, 'nothing' => null,
                    'nested' => ['a' => ['b' => ['c' => '|||']]],
                ],
                'flashes' => ['notice' => ['saved|ok', 'second']],
            ],
            [],
        ],
        'post_authentication' => [
            'PostAuthenticationToken (Symfony 5.x authenticator system)',
            ['user' => 'dave', 'roles' => ['ROLE_USER', 'ROLE_API'], 'firewall' => 'main', 'token' => 'post_authentication'],
            [],
        ],
        'remember_me' => [
            'RememberMeToken: roles come from the user',
            ['user' => 'gina', 'roles' => ['ROLE_USER', 'ROLE_MEMBER'], 'firewall' => 'main', 'token' => 'remember_me'],
            [],
        ],
        'pre_authenticated' => [
            'PreAuthenticatedToken (e.g. X.509 / REMOTE_USER)',
            ['user' => 'henry', 'roles' => ['ROLE_USER'], 'firewall' => 'main', 'token' => 'pre_authenticated'],
            [],
        ],
        'switch_user' => [
            'SwitchUserToken: an admin impersonating ivan; the original token is nested inside',
            ['user' => 'ivan', 'roles' => ['ROLE_USER', 'ROLE_PREVIOUS_ADMIN'], 'firewall' => 'main', 'token' => 'switch_user'],
            [],
        ],
        'handler_php_serialize' => [
            'session.serialize_handler=php_serialize',
            ['user' => 'judy', 'roles' => ['ROLE_USER'], 'firewall' => 'main', 'serialize_handler' => 'php_serialize',
             'attributes_after' => ['k|1' => 'v|1']],
            [],
        ],
        'handler_php_binary' => [
            'session.serialize_handler=php_binary',
            ['user' => 'kim', 'roles' => ['ROLE_USER'], 'firewall' => 'main', 'serialize_handler' => 'php_binary',
             'attributes_after' => ['k|1' => 'v|1']],
            [],
        ],
    ];
}

/** What Go must report for a stored token, derived from the token object. */
function wsgate_expect_token(string $firewall, $token): array
{
    if ($token instanceof AnonymousToken) {
        return ['firewall' => $firewall, 'authenticated' => false, 'reason' => 'AnonymousToken'];
    }
    if (!$token->isAuthenticated(false)) {
        return ['firewall' => $firewall, 'authenticated' => false, 'reason' => 'token not authenticated'];
    }
    $user = $token->getUser();
    $t = [
        'token_class' => get_class($token),
        'user_identifier' => $user instanceof UserInterface ? $user->getUserIdentifier() : (string) $user,
        'user_class' => is_string($user) ? 'string' : get_class($user),
        'roles' => array_values($token->getRoleNames()),
    ];
    if ($token instanceof SwitchUserToken) {
        $o = $token->getOriginalToken()->getUser();
        $t['impersonator'] = $o instanceof UserInterface ? $o->getUserIdentifier() : (string) $o;
        $t['impersonator_class'] = is_string($o) ? 'string' : get_class($o);
    }
    // Symfony 5.4 on PHP 8 always stores tokens through __serialize().
    $t['layout'] = '__serialize';

    return ['firewall' => $firewall, 'authenticated' => true, 'token' => $t];
}

/** Runs write-session.php in its own process and returns its JSON output. */
function wsgate_run_writer(array $in): array
{
    $cmd = [PHP_BINARY, __DIR__.'/write-session.php', json_encode($in, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE)];
    $proc = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
    if (!is_resource($proc)) {
        throw new RuntimeException('cannot start write-session.php');
    }
    $out = stream_get_contents($pipes[1]);
    $err = stream_get_contents($pipes[2]);
    fclose($pipes[1]);
    fclose($pipes[2]);
    if (0 !== ($rc = proc_close($proc))) {
        throw new RuntimeException("write-session.php exited $rc: $err");
    }

    return json_decode($out, true, 8, JSON_THROW_ON_ERROR);
}

function wsgate_gen(string $outDir): void
{
    wsgate_autoload();
    if (!is_dir($outDir) && !mkdir($outDir, 0777, true)) {
        throw new RuntimeException("cannot create $outDir");
    }
    $tmp = sys_get_temp_dir().'/wsgate-gen-'.bin2hex(random_bytes(6));
    if (!mkdir($tmp, 0700)) {
        throw new RuntimeException("cannot create $tmp");
    }
    try {
        foreach (wsgate_cases() as $case => [$desc, $in, $absent]) {
            $in += ['store' => 'files', 'dir' => $tmp];
            $res = wsgate_run_writer($in);
            $file = $tmp.'/sess_'.$res['id'];
            $data = file_get_contents($file);
            if (false === $data || '' === $data) {
                throw new RuntimeException("$case: PHP wrote no session file");
            }
            unlink($file);

            $firewalls = [];
            if (isset($in['tokens'])) {
                $tokens = $in['tokens'];
            } elseif (null === ($in['user'] ?? null) && 'anonymous' !== ($in['token'] ?? null)) {
                $tokens = [];
            } else {
                $tokens = [$in];
            }
            foreach ($tokens as $t) {
                $fw = $t['firewall'] ?? 'main';
                $firewalls[] = wsgate_expect_token($fw, wsgate_token($t));
            }
            foreach ($absent as $fw) {
                $firewalls[] = ['firewall' => $fw, 'authenticated' => false, 'reason' => "no _security_{$fw} attribute"];
            }
            $expect = [
                'description' => $desc,
                'serialize_handler' => $in['serialize_handler'] ?? 'php',
                'user_identifier_properties_by_class' => WSGATE_BY_CLASS,
                'firewalls' => $firewalls,
            ];
            file_put_contents("$outDir/$case.sess", $data);
            file_put_contents("$outDir/$case.json", json_encode($expect, JSON_THROW_ON_ERROR | JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE)."\n");
            fwrite(STDERR, sprintf("%-24s %5d bytes\n", $case, strlen($data)));
        }
        foreach (['sf28', 'sf34', 'sf41', 'sf42', 'sf44', 'sf44_php73', 'sf6', 'sf7'] as $layout) {
            $cmd = [PHP_BINARY, __DIR__.'/gen-legacy.php', $layout, $outDir];
            $proc = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
            $out = stream_get_contents($pipes[1]);
            $err = stream_get_contents($pipes[2]);
            fclose($pipes[1]);
            fclose($pipes[2]);
            if (0 !== ($rc = proc_close($proc))) {
                throw new RuntimeException("gen-legacy.php $layout exited $rc: $err");
            }
            fwrite(STDERR, $out);
        }
    } finally {
        foreach (glob($tmp.'/*') ?: [] as $f) {
            @unlink($f);
        }
        @rmdir($tmp);
    }
}

set_error_handler(function (int $no, string $msg, string $file, int $line): bool {
    if ($no & (E_DEPRECATED | E_USER_DEPRECATED)) {
        return true;
    }
    throw new ErrorException($msg, 0, $no, $file, $line);
});
try {
    wsgate_gen($argv[1] ?? __DIR__.'/../../phpsession/testdata');
} catch (Throwable $e) {
    fwrite(STDERR, 'gen-fixtures: '.get_class($e).': '.$e->getMessage()."\n");
    exit(1);
}
