<?php
/*
 * gen-legacy.php — session fixtures in the token layouts of Symfony versions
 * that are not installed: 2.8/3.4 (\Serializable, parent data as a nested
 * serialize() string, Role objects), 4.1 (SwitchUserToken), 4.2 (parent data
 * as nested arrays), 4.3/4.4 on PHP >= 7.4 (__serialize) and on PHP < 7.4
 * (\Serializable around the same arrays), 6.x and 7.x (no authenticated
 * flag; 7.3+ leaves roles to an EquatableInterface user).
 *
 * Usage: php test/php/gen-legacy.php <layout> <out dir>
 * (run by gen-fixtures.php, one process per layout).
 *
 * Each layout defines small classes under Symfony's own class names that
 * store exactly the data those versions store (see the facts in
 * phpsession/symfony.go); real PHP 8.2 serializes them, and PHP's own
 * session handlers (php, php_binary, php_serialize, igbinary) write the
 * record. PHP 5 and 7 write the same serialize() grammar, so the bytes are
 * those an old application wrote. Symfony itself is NOT loaded here.
 *
 * Writes <out>/legacy_<layout>_<case>_<handler>.sess and .json like
 * gen-fixtures.php.
 */

declare(strict_types=1);

set_error_handler(function (int $no, string $msg, string $file, int $line): bool {
    if ($no & (E_DEPRECATED | E_USER_DEPRECATED)) {
        return true; // "implements Serializable without __serialize" on PHP 8.1+
    }
    throw new ErrorException($msg, 0, $no, $file, $line);
});

const NS_TOKEN = 'Symfony\\Component\\Security\\Core\\Authentication\\Token';
const NS_USER = 'Symfony\\Component\\Security\\Core\\User';

[$_, $layout, $outDir] = $argv + [null, null, null];
if (null === $layout || null === $outDir) {
    fwrite(STDERR, "usage: php gen-legacy.php <layout> <out dir>\n");
    exit(2);
}

/* ---- Classes per layout ------------------------------------------------ */

$roleClasses = <<<'PHP'
namespace Symfony\Component\Security\Core\Role {
    class Role { private $role; public function __construct($role) { $this->role = (string) $role; } public function getRole() { return $this->role; } }
    class SwitchUserRole extends Role { private $source; public function __construct($role, $source) { parent::__construct($role); $this->source = $source; } }
}
PHP;

$legacyUser = <<<'PHP'
namespace Symfony\Component\Security\Core\User {
    final class User {
        private $username; private $password; private $enabled = true; private $accountNonExpired = true;
        private $credentialsNonExpired = true; private $accountNonLocked = true; private $roles;
        public function __construct($u, $p, array $roles) { $this->username = $u; $this->password = $p; $this->roles = $roles; }
    }
}
namespace App\Entity {
    class LegacyUser implements \Serializable {
        private $id = 42; private $username; private $password = 'hash';
        public function __construct($u) { $this->username = $u; }
        public function serialize() { return serialize([$this->id, $this->username, $this->password]); }
        public function unserialize($s) { [$this->id, $this->username, $this->password] = unserialize($s); }
    }
}
PHP;

// Symfony <= 4.1: \Serializable, parent::serialize() is a string.
$sf28 = <<<'PHP'
namespace Symfony\Component\Security\Core\Authentication\Token {
    use Symfony\Component\Security\Core\Role\Role;
    abstract class AbstractToken implements \Serializable {
        private $user; private $roles = []; private $authenticated = false; private $attributes = [];
        public function __construct(array $roles = []) { foreach ($roles as $r) { $this->roles[] = \is_string($r) ? new Role($r) : $r; } }
        public function setUser($u) { $this->user = $u; }
        public function setAuthenticated($a) { $this->authenticated = (bool) $a; }
        public function serialize() {
            return serialize([\is_object($this->user) ? clone $this->user : $this->user, $this->authenticated,
                array_map(function ($r) { return clone $r; }, $this->roles), $this->attributes]);
        }
        public function unserialize($s) { [$this->user, $this->authenticated, $this->roles, $this->attributes] = unserialize($s); }
    }
    class UsernamePasswordToken extends AbstractToken {
        private $credentials; private $providerKey;
        public function __construct($user, $credentials, $providerKey, array $roles = []) {
            parent::__construct($roles); $this->setUser($user); $this->credentials = $credentials; $this->providerKey = $providerKey;
            parent::setAuthenticated(\count($roles) > 0);
        }
        public function serialize() { return serialize([$this->credentials, $this->providerKey, parent::serialize()]); }
        public function unserialize($s) { [$this->credentials, $this->providerKey, $p] = unserialize($s); parent::unserialize($p); }
    }
    class PreAuthenticatedToken extends UsernamePasswordToken {}
    class RememberMeToken extends AbstractToken {
        private $secret; private $providerKey;
        public function __construct($user, $providerKey, $secret, array $roles) {
            parent::__construct($roles); $this->setUser($user); $this->secret = $secret; $this->providerKey = $providerKey; parent::setAuthenticated(true);
        }
        public function serialize() { return serialize([$this->secret, $this->providerKey, parent::serialize()]); }
        public function unserialize($s) { [$this->secret, $this->providerKey, $p] = unserialize($s); parent::unserialize($p); }
    }
    class AnonymousToken extends AbstractToken {
        private $secret;
        public function __construct($secret, $user, array $roles = []) { parent::__construct($roles); $this->secret = $secret; $this->setUser($user); parent::setAuthenticated(true); }
        public function serialize() { return serialize([$this->secret, parent::serialize()]); }
        public function unserialize($s) { [$this->secret, $p] = unserialize($s); parent::unserialize($p); }
    }
}
namespace Symfony\Component\Security\Guard\Token {
    use Symfony\Component\Security\Core\Authentication\Token\AbstractToken;
    class PostAuthenticationGuardToken extends AbstractToken {
        private $providerKey;
        public function __construct($user, $providerKey, array $roles) { parent::__construct($roles); $this->setUser($user); $this->providerKey = $providerKey; parent::setAuthenticated(true); }
        public function serialize() { return serialize([$this->providerKey, parent::serialize()]); }
        public function unserialize($s) { [$this->providerKey, $p] = unserialize($s); parent::unserialize($p); }
    }
}
PHP;

// Symfony 4.1 added SwitchUserToken (parent string of UsernamePasswordToken).
$sf41extra = <<<'PHP'
namespace Symfony\Component\Security\Core\Authentication\Token {
    class SwitchUserToken extends UsernamePasswordToken {
        private $originalToken;
        public function __construct($user, $credentials, $providerKey, array $roles, $originalToken) { parent::__construct($user, $credentials, $providerKey, $roles); $this->originalToken = $originalToken; }
        public function serialize() { return serialize([$this->originalToken, parent::serialize()]); }
        public function unserialize($s) { [$this->originalToken, $p] = unserialize($s); parent::unserialize($p); }
    }
}
PHP;

// Symfony 4.2 (and 4.3/4.4 on PHP < 7.4): \Serializable, parent data as a
// nested array; $five adds 4.3's roleNames.
function sf42_classes(bool $five): string
{
    $abs = $five
        ? '[$this->user, $this->authenticated, $this->roles, $this->attributes, $this->roleNames]'
        : '[$this->user, $this->authenticated, $this->roles, $this->attributes]';

    return <<<PHP
namespace Symfony\\Component\\Security\\Core\\Authentication\\Token {
    use Symfony\\Component\\Security\\Core\\Role\\Role;
    abstract class AbstractToken implements \\Serializable {
        private \$user; private \$roles = []; private \$roleNames = []; private \$authenticated = false; private \$attributes = [];
        public function __construct(array \$roles = []) { foreach (\$roles as \$r) { \$this->roles[] = new Role(\$r); \$this->roleNames[] = \$r; } }
        public function setUser(\$u) { \$this->user = \$u; }
        public function setAuthenticated(\$a) { \$this->authenticated = (bool) \$a; }
        public function serialize(\$asArray = false) { \$d = $abs; return \$asArray ? \$d : serialize(\$d); }
        public function unserialize(\$s) {}
    }
    class UsernamePasswordToken extends AbstractToken {
        private \$credentials; private \$providerKey;
        public function __construct(\$user, \$credentials, \$providerKey, array \$roles = []) {
            parent::__construct(\$roles); \$this->setUser(\$user); \$this->credentials = \$credentials; \$this->providerKey = \$providerKey; parent::setAuthenticated(\\count(\$roles) > 0);
        }
        public function serialize(\$asArray = false) { \$d = [\$this->credentials, \$this->providerKey, parent::serialize(true)]; return \$asArray ? \$d : serialize(\$d); }
    }
    class RememberMeToken extends AbstractToken {
        private \$secret; private \$providerKey;
        public function __construct(\$user, \$providerKey, \$secret, array \$roles) { parent::__construct(\$roles); \$this->setUser(\$user); \$this->secret = \$secret; \$this->providerKey = \$providerKey; parent::setAuthenticated(true); }
        public function serialize(\$asArray = false) { \$d = [\$this->secret, \$this->providerKey, parent::serialize(true)]; return \$asArray ? \$d : serialize(\$d); }
    }
    class SwitchUserToken extends UsernamePasswordToken {
        private \$originalToken;
        public function __construct(\$user, \$credentials, \$providerKey, array \$roles, \$originalToken) { parent::__construct(\$user, \$credentials, \$providerKey, \$roles); \$this->originalToken = \$originalToken; }
        public function serialize(\$asArray = false) { \$d = [\$this->originalToken, parent::serialize(true)]; return \$asArray ? \$d : serialize(\$d); }
    }
}
PHP;
}

// Symfony 4.3+ on PHP >= 7.4, 5.x, 6.x, 7.x: __serialize().
function sf_serialize_classes(string $flavour): string
{
    switch ($flavour) {
        case 'sf44': $abs = '[$this->user, $this->authenticated, $this->roles, $this->attributes, $this->roleNames]'; $cred = '$this->credentials'; break;
        case 'sf6': $abs = '[$this->user, true, null, $this->attributes, $this->roleNames]'; $cred = 'null'; break;
        default: $abs = '[$this->user, true, null, $this->attributes]'; $cred = 'null'; break; // 7.3+, EquatableInterface user
    }

    return <<<PHP
namespace Symfony\\Component\\Security\\Core\\Authentication\\Token {
    use Symfony\\Component\\Security\\Core\\Role\\Role;
    abstract class AbstractToken {
        private \$user; private \$roles = []; private \$roleNames = []; private \$authenticated = false; private \$attributes = [];
        public function __construct(array \$roles = []) { foreach (\$roles as \$r) { \$this->roles[] = new Role(\$r); \$this->roleNames[] = \$r; } }
        public function setUser(\$u) { \$this->user = \$u; }
        public function setAuthenticated(\$a) { \$this->authenticated = (bool) \$a; }
        public function __serialize(): array { return $abs; }
        public function __unserialize(array \$d): void {}
    }
    class UsernamePasswordToken extends AbstractToken {
        private \$credentials = 'secret'; private \$firewallName;
        public function __construct(\$user, \$firewallName, array \$roles = []) { parent::__construct(\$roles); \$this->setUser(\$user); \$this->firewallName = \$firewallName; parent::setAuthenticated(\\count(\$roles) > 0); }
        public function __serialize(): array { return [$cred, \$this->firewallName, parent::__serialize()]; }
    }
    class RememberMeToken extends AbstractToken {
        private \$secret = 's3cr3t'; private \$firewallName;
        public function __construct(\$user, \$firewallName, array \$roles) { parent::__construct(\$roles); \$this->setUser(\$user); \$this->firewallName = \$firewallName; parent::setAuthenticated(true); }
        public function __serialize(): array { return [\$this->secret, \$this->firewallName, parent::__serialize()]; }
    }
    class SwitchUserToken extends UsernamePasswordToken {
        private \$originalToken; private \$originatedFromUri = '/admin';
        public function __construct(\$user, \$firewallName, array \$roles, \$originalToken) { parent::__construct(\$user, \$firewallName, \$roles); \$this->originalToken = \$originalToken; }
        public function __serialize(): array { return [\$this->originalToken, \$this->originatedFromUri, parent::__serialize()]; }
    }
}
namespace Symfony\\Component\\Security\\Http\\Authenticator\\Token {
    use Symfony\\Component\\Security\\Core\\Authentication\\Token\\AbstractToken;
    class PostAuthenticationToken extends AbstractToken {
        private \$firewallName;
        public function __construct(\$user, \$firewallName, array \$roles) { parent::__construct(\$roles); \$this->setUser(\$user); \$this->firewallName = \$firewallName; parent::setAuthenticated(true); }
        public function __serialize(): array { return [null, \$this->firewallName, parent::__serialize()]; }
    }
}
namespace App\\Security {
    use Symfony\\Component\\Security\\Core\\Authentication\\Token\\AbstractToken;
    class ApiToken extends AbstractToken {
        private \$apiKey = 'k|1';
        public function __construct(\$user, array \$roles) { parent::__construct(\$roles); \$this->setUser(\$user); parent::setAuthenticated(true); }
        public function __serialize(): array { return [\$this->apiKey, parent::__serialize()]; }
    }
}
namespace Symfony\\Component\\Security\\Core\\User {
    final class InMemoryUser {
        private \$username; private \$password; private \$enabled = true; private \$roles;
        public function __construct(\$u, \$p, array \$roles) { \$this->username = \$u; \$this->password = \$p; \$this->roles = \$roles; }
    }
}
PHP;
}

/* ---- Cases per layout: [name, token builder, expected token facts] ------ */

$T = NS_TOKEN.'\\';
$userClass = NS_USER.'\\User';
$cases = [];
$layoutName = $layout;
switch ($layout) {
    case 'sf28':
    case 'sf34':
    case 'sf41':
        eval($roleClasses.$legacyUser.$sf28.('sf41' === $layout ? $sf41extra : ''));
        $ser = 'Serializable';
        $cases['upt'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \Symfony\Component\Security\Core\User\User('alice', 'h', ['ROLE_USER']), null, 'main', ['ROLE_USER', 'ROLE_ADMIN']),
            [$T.'UsernamePasswordToken', 'alice', $userClass, ['ROLE_USER', 'ROLE_ADMIN'], $ser]];
        $cases['string_user'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken('bob', 'pw', 'main', ['ROLE_USER']),
            [$T.'UsernamePasswordToken', 'bob', 'string', ['ROLE_USER'], $ser]];
        $cases['serializable_user'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \App\Entity\LegacyUser('carol'), null, 'main', ['ROLE_USER']),
            [$T.'UsernamePasswordToken', 'carol', 'App\\Entity\\LegacyUser', ['ROLE_USER'], $ser]];
        $cases['remember_me'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\RememberMeToken(new \Symfony\Component\Security\Core\User\User('dave', 'h', ['ROLE_USER']), 'main', 'secret', ['ROLE_USER']),
            [$T.'RememberMeToken', 'dave', $userClass, ['ROLE_USER'], $ser]];
        $cases['pre_authenticated'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\PreAuthenticatedToken(new \Symfony\Component\Security\Core\User\User('erin', 'h', []), 'cert', 'main', ['ROLE_USER']),
            [$T.'PreAuthenticatedToken', 'erin', $userClass, ['ROLE_USER'], $ser]];
        $cases['guard'] = [fn () => new \Symfony\Component\Security\Guard\Token\PostAuthenticationGuardToken(new \Symfony\Component\Security\Core\User\User('frank', 'h', []), 'main', ['ROLE_USER']),
            [\Symfony\Component\Security\Guard\Token\PostAuthenticationGuardToken::class, 'frank', $userClass, ['ROLE_USER'], $ser]];
        $cases['anonymous'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\AnonymousToken('secret', 'anon.', []), null];
        $cases['not_authenticated'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken('gina', 'pw', 'main', []), 'token not authenticated'];
        $cases['switch_user_role'] = [function () {
            $admin = new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \Symfony\Component\Security\Core\User\User('admin', 'h', []), null, 'main', ['ROLE_ADMIN']);

            return new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \Symfony\Component\Security\Core\User\User('henry', 'h', []), null, 'main',
                ['ROLE_USER', new \Symfony\Component\Security\Core\Role\SwitchUserRole('ROLE_PREVIOUS_ADMIN', $admin)]);
        }, [$T.'UsernamePasswordToken', 'henry', $userClass, ['ROLE_USER', 'ROLE_PREVIOUS_ADMIN'], $ser, 'admin', $userClass]];
        if ('sf41' === $layout) {
            $cases['switch_user'] = [function () {
                $admin = new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \Symfony\Component\Security\Core\User\User('admin', 'h', []), null, 'main', ['ROLE_ADMIN']);

                return new \Symfony\Component\Security\Core\Authentication\Token\SwitchUserToken(new \Symfony\Component\Security\Core\User\User('ivan', 'h', []), null, 'main', ['ROLE_USER', 'ROLE_PREVIOUS_ADMIN'], $admin);
            }, [$T.'SwitchUserToken', 'ivan', $userClass, ['ROLE_USER', 'ROLE_PREVIOUS_ADMIN'], $ser, 'admin', $userClass]];
        }
        break;
    case 'sf42':
    case 'sf44_php73':
        eval($roleClasses.$legacyUser.sf42_classes('sf44_php73' === $layout));
        $ser = 'Serializable';
        $cases['upt'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \Symfony\Component\Security\Core\User\User('alice', 'h', ['ROLE_USER']), null, 'main', ['ROLE_USER', 'ROLE_ADMIN']),
            [$T.'UsernamePasswordToken', 'alice', $userClass, ['ROLE_USER', 'ROLE_ADMIN'], $ser]];
        $cases['remember_me'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\RememberMeToken('dave', 'main', 'secret', ['ROLE_USER']),
            [$T.'RememberMeToken', 'dave', 'string', ['ROLE_USER'], $ser]];
        $cases['switch_user'] = [function () {
            $admin = new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \Symfony\Component\Security\Core\User\User('admin', 'h', []), null, 'main', ['ROLE_ADMIN']);

            return new \Symfony\Component\Security\Core\Authentication\Token\SwitchUserToken(new \Symfony\Component\Security\Core\User\User('ivan', 'h', []), null, 'main', ['ROLE_USER', 'ROLE_PREVIOUS_ADMIN'], $admin);
        }, [$T.'SwitchUserToken', 'ivan', $userClass, ['ROLE_USER', 'ROLE_PREVIOUS_ADMIN'], $ser, 'admin', $userClass]];
        $cases['serializable_user'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \App\Entity\LegacyUser('carol'), null, 'main', ['ROLE_USER']),
            [$T.'UsernamePasswordToken', 'carol', 'App\\Entity\\LegacyUser', ['ROLE_USER'], $ser]];
        break;
    case 'sf44':
    case 'sf6':
    case 'sf7':
        eval($roleClasses.sf_serialize_classes($layout));
        $ser = '__serialize';
        $mem = NS_USER.'\\InMemoryUser';
        $cases['upt'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \Symfony\Component\Security\Core\User\InMemoryUser('alice', 'h', ['ROLE_USER', 'ROLE_ADMIN']), 'main', ['ROLE_USER', 'ROLE_ADMIN']),
            [$T.'UsernamePasswordToken', 'alice', $mem, ['ROLE_USER', 'ROLE_ADMIN'], $ser]];
        $cases['remember_me'] = [fn () => new \Symfony\Component\Security\Core\Authentication\Token\RememberMeToken(new \Symfony\Component\Security\Core\User\InMemoryUser('dave', null, ['ROLE_USER']), 'main', ['ROLE_USER']),
            [$T.'RememberMeToken', 'dave', $mem, ['ROLE_USER'], $ser]];
        $cases['post_authentication'] = [fn () => new \Symfony\Component\Security\Http\Authenticator\Token\PostAuthenticationToken(new \Symfony\Component\Security\Core\User\InMemoryUser('erin', null, ['ROLE_USER', 'ROLE_API']), 'main', ['ROLE_USER', 'ROLE_API']),
            ['Symfony\\Component\\Security\\Http\\Authenticator\\Token\\PostAuthenticationToken', 'erin', $mem, ['ROLE_USER', 'ROLE_API'], $ser]];
        $cases['switch_user'] = [function () {
            $admin = new \Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken(new \Symfony\Component\Security\Core\User\InMemoryUser('admin', null, ['ROLE_ADMIN']), 'main', ['ROLE_ADMIN']);

            return new \Symfony\Component\Security\Core\Authentication\Token\SwitchUserToken(new \Symfony\Component\Security\Core\User\InMemoryUser('ivan', null, ['ROLE_USER', 'ROLE_PREVIOUS_ADMIN']), 'main', ['ROLE_USER', 'ROLE_PREVIOUS_ADMIN'], $admin);
        }, [$T.'SwitchUserToken', 'ivan', $mem, ['ROLE_USER', 'ROLE_PREVIOUS_ADMIN'], $ser, 'admin', $mem]];
        $cases['app_token'] = [fn () => new \App\Security\ApiToken(new \Symfony\Component\Security\Core\User\InMemoryUser('svc', null, ['ROLE_API']), ['ROLE_API']),
            ['App\\Security\\ApiToken', 'svc', $mem, ['ROLE_API'], $ser, null, null, true]];
        break;
    default:
        fwrite(STDERR, "unknown layout $layout\n");
        exit(2);
}

/* ---- Writing ----------------------------------------------------------- */

function wsgate_write(string $handler, array $attrs): string
{
    $dir = sys_get_temp_dir().'/wsgate-legacy-'.bin2hex(random_bytes(6));
    mkdir($dir, 0700);
    ini_set('session.use_cookies', '0');
    ini_set('session.use_only_cookies', '0');
    ini_set('session.cache_limiter', '');
    ini_set('session.serialize_handler', $handler);
    session_save_path($dir);
    session_id('legacy'.bin2hex(random_bytes(8)));
    session_start();
    $_SESSION['_sf2_attributes'] = $attrs;
    $_SESSION['_sf2_flashes'] = [];
    $_SESSION['_sf2_meta'] = ['u' => time(), 'c' => time(), 'l' => 0];
    $id = session_id();
    session_write_close();
    $file = "$dir/sess_$id";
    $data = file_get_contents($file);
    unlink($file);
    rmdir($dir);
    if (false === $data || '' === $data) {
        throw new RuntimeException('PHP wrote no session');
    }

    return $data;
}

$handlers = ['php', 'php_binary', 'php_serialize'];
if (extension_loaded('igbinary')) {
    $handlers[] = 'igbinary';
}
$n = 0;
foreach ($cases as $case => [$build, $want]) {
    foreach ($handlers as $h) {
        $token = $build();
        $attrs = ['_csrf/login' => 'x|y;"z', '_security_main' => serialize($token), 'after' => [1, 'a|b']];
        $data = wsgate_write($h, $attrs);
        if (null === $want) {
            $fw = ['firewall' => 'main', 'authenticated' => false, 'reason' => 'AnonymousToken'];
        } elseif (is_string($want)) {
            $fw = ['firewall' => 'main', 'authenticated' => false, 'reason' => $want];
        } else {
            [$cls, $id, $ucls, $roles, $lay] = $want;
            $t = ['token_class' => $cls, 'user_identifier' => $id, 'user_class' => $ucls, 'roles' => $roles];
            if (isset($want[5])) {
                $t['impersonator'] = $want[5];
                $t['impersonator_class'] = $want[6];
            }
            $t['layout'] = $lay;
            if (!empty($want[7])) {
                $t['best_effort'] = true;
            }
            $fw = ['firewall' => 'main', 'authenticated' => true, 'token' => $t];
        }
        $expect = [
            'description' => "Symfony $layoutName layout ($case) written by PHP ".PHP_VERSION." through the $h handler",
            'serialize_handler' => $h,
            'user_identifier_properties_by_class' => ['App\\Entity\\LegacyUser' => ['1']],
            'firewalls' => [$fw],
        ];
        $base = "$outDir/legacy_{$layout}_{$case}_{$h}";
        file_put_contents("$base.sess", $data);
        file_put_contents("$base.json", json_encode($expect, JSON_THROW_ON_ERROR | JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE)."\n");
        ++$n;
    }
}
echo sprintf("%-24s %5d sessions\n", "legacy $layout", $n);
